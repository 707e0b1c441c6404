"""`vaeedof throughput` (Figure 6): fused images per second versus the number of inputs, for the
model's output modes and the baselines, on random images of `evaluate.throughput_size`."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import atomic
from .baselines import fusion_methods
from .figures import plot


def throughput_table(fuser, size: int, counts=range(2, 8), repeats: int = 1) -> list[dict]:
    """Fused size x size images per second versus the number of inputs, model and baselines."""
    methods = fusion_methods(fuser)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for count in counts:
        stack = [torch.rand(3, size, size, generator=generator) for _ in range(count)]
        for method, fn in methods.items():
            with torch.no_grad():
                fn(stack)  # warm-up
                start = time.perf_counter()
                for _ in range(repeats):
                    fn(stack)
            seconds = (time.perf_counter() - start) / repeats
            rows.append({"inputs": count, "method": method, "images_per_s": round(1.0 / seconds, 4),
                         "device": str(fuser.device)})
    return rows


def write_throughput(fuser, reports: Path, cfg: dict) -> None:
    """reports/throughput.csv and .png (Figure 6), with `evaluate.throughput_*` of the params."""
    size, repeats = cfg["throughput_size"], cfg["throughput_repeats"]
    rows = throughput_table(fuser, size, range(2, 8), repeats)
    atomic.write_csv(reports / "throughput.csv", rows)
    plot(rows, "inputs", "images_per_s", reports / "throughput.png",
         f"Fused {size} px images per second ({fuser.device})", log_y=True,
         xlabel="number of inputs", ylabel="fused images per second")
