"""`vaeedof throughput` (Figure 6): fused images per second versus the number of inputs, for the
model's output modes, the baselines, peers and external commands, on random images of
`evaluate.throughput_size`."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import atomic
from ..logs import get_logger
from .baselines import OK, failed_status, fusion_methods, not_run_status, unavailable_methods
from .external import CommandMethod, MethodFailed
from .figures import plot


def throughput_table(fuser, size: int, counts=range(2, 8), repeats: int = 1,
                     evaluate: dict | None = None) -> list[dict]:
    """Fused size x size images per second versus the number of inputs, model, baselines and the
    peers and external commands of `evaluate` (timed as whole commands, without a warm-up: each
    call starts the tool afresh). A method that fails, or cannot run here, gets rows without a
    speed that say why."""
    methods, unavailable = fusion_methods(fuser, evaluate), unavailable_methods(evaluate)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for count in counts:
        stack = [torch.rand(3, size, size, generator=generator) for _ in range(count)]
        for method, fn in methods.items():
            try:
                with torch.no_grad():
                    if not isinstance(fn, CommandMethod):
                        fn(stack)  # warm-up
                    start = time.perf_counter()
                    for _ in range(repeats):
                        fn(stack)
                speed, status = round(repeats / (time.perf_counter() - start), 4), OK
            except MethodFailed as exc:
                get_logger().warning("method %s failed on %d random %d px inputs: %s",
                                     method, count, size, exc)
                speed, status = None, failed_status(str(exc))
            rows.append({"inputs": count, "method": method, "images_per_s": speed,
                         "device": str(fuser.device), "status": status})
        rows += [{"inputs": count, "method": method, "images_per_s": None, "device": str(fuser.device),
                  "status": not_run_status(reason)} for method, reason in unavailable.items()]
    return rows


def write_throughput(fuser, reports: Path, cfg: dict) -> None:
    """reports/throughput.csv and .png (Figure 6), with `evaluate.throughput_*` of the params."""
    size, repeats = cfg["throughput_size"], cfg["throughput_repeats"]
    rows = throughput_table(fuser, size, range(2, 8), repeats, cfg)
    atomic.write_csv(reports / "throughput.csv", rows)
    plot([row for row in rows if row["images_per_s"] is not None], "inputs", "images_per_s",
         reports / "throughput.png", f"Fused {size} px images per second ({fuser.device})", log_y=True,
         xlabel="number of inputs", ylabel="fused images per second")
