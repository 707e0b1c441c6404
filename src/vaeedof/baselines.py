"""Classical baselines for the evaluation: the mean of the inputs, Laplacian-pyramid
max-contrast fusion, and enfuse (when installed). Images are (3, H, W) float tensors in [0, 1]."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from .errors import VaeedofError

ENFUSE_ARGS = ["--exposure-weight=0", "--saturation-weight=0", "--contrast-weight=1", "--hard-mask"]


def mean_fusion(stack: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(stack).mean(0)


def laplacian_pyramid_fusion(stack: list[torch.Tensor], levels: int = 5) -> torch.Tensor:
    """Per pyramid level, the coefficient of largest magnitude (summed over colour) wins; the
    coarsest level is averaged (Burt & Adelson style multi-focus fusion)."""
    import cv2

    images = [s.permute(1, 2, 0).numpy().astype(np.float32) for s in stack]
    height, width = images[0].shape[:2]
    levels = max(1, min(levels, int(np.log2(max(2, min(height, width)))) - 2))

    def pyramid(image):
        gaussians = [image]
        for _ in range(levels):
            gaussians.append(cv2.pyrDown(gaussians[-1]))
        laplacians = [g - cv2.pyrUp(n, dstsize=(g.shape[1], g.shape[0]))
                      for g, n in zip(gaussians[:-1], gaussians[1:], strict=True)]
        return laplacians + [gaussians[-1]]

    pyramids = [pyramid(image) for image in images]
    fused = []
    for level in range(levels):
        coefficients = np.stack([p[level] for p in pyramids])  # (n, h, w, 3)
        winner = np.abs(coefficients).sum(axis=-1).argmax(axis=0)
        fused.append(np.take_along_axis(coefficients, winner[None, ..., None], axis=0)[0])
    result = np.mean([p[levels] for p in pyramids], axis=0)
    for level in reversed(range(levels)):
        result = cv2.pyrUp(result, dstsize=(fused[level].shape[1], fused[level].shape[0])) + fused[level]
    return torch.from_numpy(np.clip(result, 0, 1)).permute(2, 0, 1)


def enfuse_available() -> bool:
    return shutil.which("enfuse") is not None


def enfuse_fusion(stack: list[torch.Tensor]) -> torch.Tensor:
    """enfuse's focus-stacking mode (contrast weight only, hard mask), through 16-bit TIFFs."""
    import cv2

    if not enfuse_available():
        raise VaeedofError("enfuse: not installed (Debian package 'enfuse')")
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for index, image in enumerate(stack):
            name = str(Path(tmp) / f"in_{index:03d}.tif")
            data = (image.permute(1, 2, 0).numpy() * 65535 + 0.5).astype(np.uint16)[..., ::-1]
            cv2.imwrite(name, data)
            names.append(name)
        out = str(Path(tmp) / "out.tif")
        result = subprocess.run(["enfuse", *ENFUSE_ARGS, "-o", out, *names], capture_output=True,
                                text=True, timeout=600)
        if result.returncode != 0:
            raise VaeedofError(f"enfuse failed: {result.stderr.strip().splitlines()[-1:]}")
        fused = cv2.imread(out, cv2.IMREAD_UNCHANGED)
    fused = fused[..., :3][..., ::-1].astype(np.float32) / (65535.0 if fused.dtype == np.uint16 else 255.0)
    return torch.from_numpy(np.ascontiguousarray(fused)).permute(2, 0, 1)
