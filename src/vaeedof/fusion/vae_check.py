"""The paper's deployment safeguard: how well the frozen VAE reconstructs each input. Content it
reconstructs badly (unusual textures, noise) limits what fusion through it can reach, so such
inputs are named. Large images are judged on a centred window of the fusion tile's size."""

from __future__ import annotations

import torch

from ..images import psnr
from ..logs import get_logger


def reconstruction_psnr(vae, image: torch.Tensor, window: int | None = None) -> float:
    """PSNR (dB) of one (3, H, W) image through the VAE: the whole image, or a centred
    `window` x `window` crop of a larger one."""
    device = next(vae.parameters()).device
    pixels = image[None].to(device)
    if window is not None:
        height, width = pixels.shape[-2:]
        top, left = max(0, (height - window) // 2), max(0, (width - window) // 2)
        pixels = pixels[..., top:top + window, left:left + window]
    with torch.no_grad():
        return psnr(vae.reconstruct(pixels), pixels)


def check_inputs(vae, named: list[tuple[str, torch.Tensor]], threshold_db: float,
                 window: int | None = None) -> list[float]:
    """Each input's reconstruction PSNR; a warning names every input below the threshold."""
    scores = []
    for name, image in named:
        value = reconstruction_psnr(vae, image, window)
        scores.append(value)
        if value < threshold_db:
            get_logger().warning("%s: the VAE reconstructs this input at %.1f dB (< %.1f): fused "
                                 "detail will be limited", name, value, threshold_db)
    return scores
