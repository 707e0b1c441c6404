"""Radiance RGBE (.hdr) files: a minimal writer and reader for float RGB environment maps.

Blender's own image save clips .hdr at 3.0, so HDRIs are written here in numpy.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import write_bytes
from ..errors import VaeedofError


def encode_rgbe(rgb: np.ndarray) -> np.ndarray:
    """float32 (H, W, 3) -> uint8 (H, W, 4) shared-exponent RGBE."""
    rgb = np.maximum(np.asarray(rgb, dtype=np.float64), 0.0)
    peak = rgb.max(axis=2)
    mantissa, exponent = np.frexp(peak)
    scale = np.where(peak > 1e-32, mantissa * 256.0 / np.maximum(peak, 1e-300), 0.0)
    rgbe = np.zeros(rgb.shape[:2] + (4,), dtype=np.uint8)
    rgbe[..., :3] = np.clip(rgb * scale[..., None], 0, 255).astype(np.uint8)
    rgbe[..., 3] = np.where(peak > 1e-32, exponent + 128, 0).astype(np.uint8)
    return rgbe


def decode_rgbe(rgbe: np.ndarray) -> np.ndarray:
    rgbe = np.asarray(rgbe)
    exponent = rgbe[..., 3].astype(np.int32)
    scale = np.where(exponent > 0, np.ldexp(1.0, exponent - 136), 0.0)
    return ((rgbe[..., :3].astype(np.float64) + 0.5) * scale[..., None]).astype(np.float32)


def write_hdr(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Uncompressed (flat) RGBE: every reader accepts it."""
    height, width = rgb.shape[:2]
    header = (
        f"#?RADIANCE\n# written by vaeedof\nFORMAT=32-bit_rle_rgbe\n\n-Y {height} +X {width}\n"
    ).encode("ascii")
    write_bytes(path, header + encode_rgbe(rgb).tobytes())


def read_hdr(path: str | os.PathLike) -> np.ndarray:
    """Read a flat RGBE file as written by write_hdr (run-length encoded files are refused)."""
    data = Path(path).read_bytes()
    if not data.startswith(b"#?"):
        raise VaeedofError(f"{path}: not a Radiance .hdr file")
    end = data.find(b"\n\n")
    line_end = data.find(b"\n", end + 2)
    if end < 0 or line_end < 0:
        raise VaeedofError(f"{path}: truncated .hdr header")
    size = data[end + 2 : line_end].split()
    if len(size) != 4 or size[0] != b"-Y" or size[2] != b"+X":
        raise VaeedofError(f"{path}: unsupported .hdr orientation {size!r}")
    height, width = int(size[1]), int(size[3])
    pixels = np.frombuffer(data[line_end + 1 :], dtype=np.uint8)
    if pixels.size != height * width * 4:
        raise VaeedofError(f"{path}: run-length encoded or truncated .hdr data")
    return decode_rgbe(pixels.reshape(height, width, 4))
