"""The paper's deployment safeguard: how well the frozen VAE reconstructs each input. Content it
reconstructs badly (unusual textures, noise) limits what fusion through it can reach, so such
inputs are named.

The check reuses the fusion's encodings and decodes only a centred window of each input, about
6 % of its area (at least 128 px a side, the whole image when smaller), with 16 px of context
(within 0.25 dB of the exact window on Lytro and keyboard frames, where no context lost 3-5 dB):
with the encodings shared it costs under a tenth of the fusion."""

from __future__ import annotations

import math

import torch

from ..images import as_float, psnr
from ..logs import get_logger
from ..nets.vae import SCALE, pad_to_multiple
from . import vae_tiles

WINDOW_AREA = 0.06
MIN_WINDOW = 128
CONTEXT = 2  # latent pixels of context around the window


def centred_window(height: int, width: int) -> tuple[int, int, int, int]:
    """A centred box (y0, y1, x0, x1) in latent pixels of an image of height x width pixels."""
    h, w = math.ceil(height / SCALE), math.ceil(width / SCALE)
    side = max(MIN_WINDOW, math.sqrt(WINDOW_AREA * height * width)) / SCALE
    wy, wx = min(h, math.ceil(side)), min(w, math.ceil(side))
    y0, x0 = (h - wy) // 2, (w - wx) // 2
    return y0, y0 + wy, x0, x0 + wx


@torch.inference_mode()
def reconstruction_psnr(vae, image: torch.Tensor, latent: torch.Tensor | None = None) -> float:
    """PSNR (dB) of the centred window of one (3, H, W) image through the VAE; `latent`: its
    encoding when the fusion already made it."""
    device = next(vae.parameters()).device
    padded = pad_to_multiple(image, SCALE)
    if latent is None:
        latent = vae_tiles.encode(vae, padded.to(device))
    y0, y1, x0, x1 = centred_window(*image.shape[-2:])
    window = vae_tiles.decode_window(vae, latent.to(device), (y0, y1, x0, x1), CONTEXT).float().cpu()
    target = as_float(padded[:, y0 * SCALE:y1 * SCALE, x0 * SCALE:x1 * SCALE])
    return psnr(window, target)


def check_inputs(vae, named: list[tuple[str, torch.Tensor]], threshold_db: float,
                 latents: list[torch.Tensor] | None = None) -> list[float]:
    """Each input's reconstruction PSNR; a warning names every input below the threshold."""
    scores = []
    for index, (name, image) in enumerate(named):
        value = reconstruction_psnr(vae, image, None if latents is None else latents[index])
        scores.append(value)
        if value < threshold_db:
            get_logger().warning("%s: the VAE reconstructs this input at %.1f dB (< %.1f): fused "
                                 "detail will be limited", name, value, threshold_db)
    return scores
