"""What each training step reads: per-rank batch indices addressable by global step (so resume is
exact), the pixel patches beside the latents, and augmentation randomness as a pure function
of (seed, rank, step)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

from .distributed import Runtime
from .latents import Shards


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """Augmentation randomness is a pure function of (seed, rank, step): resume is exact."""
    return torch.Generator().manual_seed((seed * 1_000_003 + rank * 7_919 + step) % (2**63))


class BatchStream:
    """Per-rank batch indices from a DistributedSampler, addressable by global step."""

    def __init__(self, count: int, runtime: Runtime, batch: int, seed: int):
        self.batch = batch
        self.sampler = DistributedSampler(range(count), num_replicas=runtime.world_size,
                                          rank=runtime.rank, shuffle=True, seed=seed)
        self.per_epoch = max(1, self.sampler.num_samples // batch)

    def indices(self, step: int) -> list[int]:
        epoch, offset = divmod(step, self.per_epoch)
        self.sampler.set_epoch(epoch)
        indices = list(self.sampler)
        while len(indices) < self.batch:  # tiny datasets: repeat within the epoch
            indices += indices
        return indices[offset * self.batch:(offset + 1) * self.batch]


def latent_batch(latents: Shards, indices: list[int]) -> torch.Tensor:
    """fp16 (inputs + 1, C, h, w) samples -> float (B, inputs + 1, C, h, w)."""
    return torch.from_numpy(np.stack([latents[i] for i in indices])).float()


def pixel_batch(pixels: Shards, indices: list[int]) -> torch.Tensor:
    """uint8 (n + 1, H, W, 3) patches -> float (B, n + 1, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.stack([pixels[i] for i in indices])).permute(0, 1, 4, 2, 3).float() / 255
