"""The one device rule: `auto` is CUDA when present, else Apple's MPS, else the CPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import VaeedofError

if TYPE_CHECKING:
    import torch

CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    import torch  # imported here: the CLI reads CHOICES without loading torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if name not in CHOICES:
        raise VaeedofError(f"device {name!r}: expected one of {', '.join(CHOICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise VaeedofError("device cuda: CUDA is not available on this machine (use --device cpu)")
    return torch.device(name)
