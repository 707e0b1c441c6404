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
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise VaeedofError("device mps: Apple's MPS is not available in this build or on this "
                               "machine (use --device cpu)")
    return torch.device(name)


def tune_cpu_allocator() -> None:
    """Keep freed memory in the process (glibc): large tensors come and go with every tile, and
    returning them to the kernel each time cost as much system time as the computation itself
    (11 s of 15 s on a 520 px pair). No-op where glibc's mallopt is missing."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return
    if mallopt is not None:
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        mallopt(m_trim_threshold, 1 << 30)
        mallopt(m_top_pad, 1 << 28)
        mallopt(m_mmap_threshold, 1 << 25)  # glibc's maximum (32 MiB on 64-bit)
