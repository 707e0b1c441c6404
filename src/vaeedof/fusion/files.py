"""The user-facing fusion path: `vaeedof fuse` (files in, a file out) and `vaeedof.fusion.fuse`
(tensors in, a tensor out)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import torch

from ..errors import VaeedofError
from ..images import READ_SUFFIXES, check_output_path, load_image, save_image
from ..logs import get_logger
from .engine import DEFAULT_TILE
from .vae_check import check_inputs


def expand_inputs(items: list[str]) -> list[Path]:
    """Files as given; folders as their images (sorted by name); glob patterns expanded."""
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in READ_SUFFIXES)
            if not found:
                raise VaeedofError(f"{path}: folder holds no images")
            paths += found
        elif any(ch in item for ch in "*?[") and not path.exists():
            matches = sorted(glob.glob(item))
            if not matches:
                raise VaeedofError(f"{item}: pattern matches no file")
            paths += [Path(m) for m in matches]
        else:
            paths.append(path)
    if not paths:
        raise VaeedofError("no input images")
    return paths


def fuse(images: list[torch.Tensor], checkpoint: str | os.PathLike = "models/fusion_ema.safetensors",
         device: str = "auto", tile: int | None = DEFAULT_TILE,
         resources_dir: str | os.PathLike = "resources", mirrors: list[str] | None = None,
         mode: str = "latent") -> torch.Tensor:
    """Fuse same-size (3, H, W) images in [0, 1] (any number) into one (3, H, W) image;
    mode: "latent" (the paper) or "hybrid" (exact in-focus input pixels)."""
    from .loader import load_fuser

    if not images:
        raise VaeedofError("no input images")
    sizes = {tuple(image.shape) for image in images}
    if len(sizes) > 1:
        raise VaeedofError(f"input sizes differ: {sorted(sizes)}")
    return load_fuser(checkpoint, device, tile, resources_dir, mirrors, mode).fuse(list(images))


def fuse_files(inputs: list[Path], output: str | os.PathLike, checkpoint: str | os.PathLike,
               device: str = "auto", tile: int | None = DEFAULT_TILE,
               resources_dir: str | os.PathLike = "resources", mirrors: list[str] | None = None,
               vae_check_db: float | None = None,
               mode: str = "latent", strict_mode: bool = True) -> Path:
    """Read, check, fuse and write atomically; 16-bit output when the first input is 16-bit and
    the format allows; the first input's ICC profile is kept."""
    output = check_output_path(output, inputs)
    loaded = [load_image(path) for path in inputs]
    sizes = {(im.pixels.shape[2], im.pixels.shape[1]) for im in loaded}
    if len(sizes) > 1:
        listing = ", ".join(f"{im.path.name} {im.pixels.shape[2]}x{im.pixels.shape[1]}" for im in loaded)
        raise VaeedofError(f"input sizes differ: {listing}")
    if len(loaded) == 1:
        get_logger().warning("%s: only one input; the result is its VAE-fused reconstruction", inputs[0])
    from .loader import load_fuser

    fuser = load_fuser(checkpoint, device, tile, resources_dir, mirrors, mode, strict_mode)
    if vae_check_db is not None:
        check_inputs(fuser.vae, [(str(im.path), im.pixels) for im in loaded], vae_check_db, tile)
    fused = fuser.fuse([im.pixels for im in loaded])
    first = loaded[0]
    save_image(fused, output, bits=first.bits, icc_profile=first.icc_profile)
    get_logger().info("fused %d images into %s", len(loaded), output)
    return Path(output)
