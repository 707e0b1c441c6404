"""Validation during training on the held-out patches: the EMA model's fused latents decoded by
the frozen VAE (latent output) and its hybrid output, next to the mean of the inputs and the
VAE ceiling (the GT's own round trip), as PSNR, with a preview image
(mean | fused | hybrid | GT per row)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import atomic
from ..images import psnr, to_pil
from ..nets.hybrid import DEFAULT_SETTINGS, HybridSettings, compose
from ..nets.unet import fill_inputs
from .latents import Shards


def load_val_set(latents_dir: str | Path, patches_dir: str | Path) -> tuple[Shards, np.ndarray]:
    """The validation latents and the uint8 pixel patches they came from."""
    val = Shards(latents_dir, "val")
    shards = val.manifest["splits"]["val"]["shards"]
    pixels = np.concatenate([np.load(Path(patches_dir) / s["file"], mmap_mode="r") for s in shards])
    return val, pixels


@torch.no_grad()
def validate(ema, vae, val: Shards, val_pixels: np.ndarray, max_inputs: int,
             device: torch.device, preview_path: Path | None = None,
             settings: HybridSettings = DEFAULT_SETTINGS) -> dict[str, float]:
    """PSNR of the EMA model's decoded fusions and hybrid outputs, the mean of the inputs, and the
    VAE ceiling."""
    fused, hybrid, mean, ceiling = [], [], [], []
    rows = []
    for index in range(len(val)):
        sample = torch.from_numpy(val[index]).float().to(device)
        inputs = fill_inputs(sample[None, :-1], max_inputs)
        latent, mix = ema(inputs, with_mix=True)
        decoded = vae.decode(latent)
        pred = decoded[0].cpu()
        pixels = torch.from_numpy(np.asarray(val_pixels[index])).permute(0, 3, 1, 2).float() / 255
        gt, mean_img = pixels[-1], pixels[:-1].mean(0)
        pixel_inputs = fill_inputs(pixels[None, :-1], max_inputs).to(device)
        mixed = compose(mix, pixel_inputs, decoded, ema.mix_sharpness, settings)[0].cpu()
        hybrid.append(psnr(mixed, gt))
        fused.append(psnr(pred, gt))
        mean.append(psnr(mean_img, gt))
        ceiling.append(psnr(vae.decode(sample[None, -1])[0].cpu(), gt))
        if len(rows) < 4:
            rows.append(torch.cat([mean_img, pred, mixed, gt], dim=-1))
    if preview_path is not None and rows:
        atomic.write_pil_image(to_pil(torch.cat(rows, dim=-2)), preview_path)
    return {"val_psnr": float(np.mean(fused)), "val_psnr_hybrid": float(np.mean(hybrid)),
            "val_psnr_mean_of_inputs": float(np.mean(mean)),
            "val_psnr_vae_ceiling": float(np.mean(ceiling))}
