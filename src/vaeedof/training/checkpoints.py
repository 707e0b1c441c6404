"""Training checkpoints: step-stamped files written atomically, the last few kept, the latest
loadable one found for automatic resume. Loaded with weights_only=True: a checkpoint is data,
and a pickle that tries to run code is refused, never executed."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from .. import atomic
from ..errors import VaeedofError
from ..logs import get_logger

_NAME = re.compile(r"^step_(\d{8})\.pt$")


def path_for(directory: Path, step: int) -> Path:
    return directory / f"step_{step:08d}.pt"


def save(directory: str | os.PathLike, step: int, state: dict, keep: int) -> Path:
    directory = Path(directory)
    target = path_for(directory, step)
    with atomic.atomic_path(target, suffix=".pt") as tmp:
        torch.save(state, tmp)
    for old in list_steps(directory)[:-keep] if keep > 0 else []:
        path_for(directory, old).unlink(missing_ok=True)
    return target


def list_steps(directory: str | os.PathLike) -> list[int]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name)))


def load(path: str | os.PathLike) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated, or a pickle with code
        raise VaeedofError(f"{path}: not a loadable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise VaeedofError(f"{path}: not a training checkpoint (missing step/model)")
    return state


def latest(directory: str | os.PathLike) -> dict | None:
    """The newest checkpoint that loads; broken newer ones are reported and skipped."""
    for step in reversed(list_steps(directory)):
        path = path_for(Path(directory), step)
        try:
            return load(path)
        except VaeedofError as exc:
            get_logger().warning("skipping %s", exc)
    return None
