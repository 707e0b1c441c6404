"""Reading user images: EXIF orientation honoured, grey/palette/RGBA/16-bit brought to float RGB
in [0, 1], and a one-line error naming the file when it cannot be read."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import VaeedofError


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
    except FileNotFoundError:
        raise VaeedofError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise VaeedofError(f"{path}: unreadable or corrupt image ({exc})") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float32) / 65535.0
        array = np.repeat(array[..., None], 3, axis=-1)
    else:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
