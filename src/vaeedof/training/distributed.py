"""Distributed setup hidden behind two calls: gloo on CPU, NCCL on CUDA; the same code runs as
one plain process, under `torchrun` on N processes or GPUs, and across nodes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..devices import resolve_device


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device: str = "auto") -> Runtime:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = resolve_device(device).type == "cuda"  # training runs on CUDA or the CPU
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
        # Processes sharing the CPU get an equal share of its cores, at least one each.
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Runtime(rank, world_size, local_rank, chosen)


def barrier(runtime: Runtime) -> None:
    if runtime.world_size > 1:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    if runtime.world_size > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= runtime.world_size
    return value


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
