"""The rendered MattingMFIF dataset on disk, in one place: one folder per complete scene, with
`focus_<k>.png` focused on `planes[k]` of `scene.json`, `gt.png` (no depth of field),
`index.png` (plane index per pixel) and `scene.json` written last. Every reader and the
renderer take the names from here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..atomic import read_json
from ..errors import VaeedofError

if TYPE_CHECKING:  # the renderer reads this module without torch
    import torch

SCENE_FILE = "scene.json"
GT_FILE = "gt.png"
INDEX_FILE = "index.png"


def focus_file(plane: int) -> str:
    return f"focus_{plane}.png"


# What readers take from a rendered scene's scene.json (the renderer writes these and more).
META_KEYS = {"focus_order": list, "planes": list, "fingerprint": str}


def read_meta(scene_dir: str | os.PathLike, needs: tuple[str, ...] = ("focus_order",)) -> dict:
    """A rendered scene's scene.json, with the META_KEYS its reader `needs` checked."""
    path = Path(scene_dir) / SCENE_FILE
    meta = read_json(path, "the scene is not rendered")
    if not isinstance(meta, dict):
        raise VaeedofError(f"{path}: expected a JSON object; render the scene again")
    for key in ("focus_order", *needs):
        if not isinstance(meta.get(key), META_KEYS[key]):
            raise VaeedofError(f"{path}: lacks {key!r} (a {META_KEYS[key].__name__}); render the scene again")
    planes = len(meta["planes"]) if isinstance(meta.get("planes"), list) else float("inf")
    if not all(isinstance(k, int) and 0 <= k < planes for k in meta["focus_order"]):
        raise VaeedofError(f"{path}: focus_order {meta['focus_order']} does not index its planes; "
                           "render the scene again")
    return meta


def image_files(meta: dict) -> list[str]:
    """The focus renders in focus order, then the ground truth."""
    return [focus_file(k) for k in meta["focus_order"]] + [GT_FILE]


def rendered_scenes(folder: str | os.PathLike) -> list[Path]:
    """Scene directories of a split, in name order; only complete ones (scene.json written last)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VaeedofError(f"{folder}: rendered split not found (run the render stage first)")
    return sorted(p for p in folder.iterdir() if (p / SCENE_FILE).exists())


def load_tensors(scene_dir: Path) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The focus inputs in focus order and the GT, as (3, H, W) float tensors in [0, 1]."""
    from ..images import read_image

    *inputs, gt = (read_image(scene_dir / name) for name in image_files(read_meta(scene_dir)))
    return inputs, gt


def load_index(scene_dir: str | os.PathLike) -> np.ndarray:
    """(H, W) uint8: the plane index of every pixel (255: no plane)."""
    path = Path(scene_dir) / INDEX_FILE
    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except FileNotFoundError:
        raise VaeedofError(f"{path}: not found (the scene is not rendered)") from None
    except OSError as exc:
        raise VaeedofError(f"{path}: unreadable plane index ({exc})") from None


def load_uint8(scene_dir: Path) -> np.ndarray:
    """(inputs + 1, H, W, 3) uint8: the focus renders in focus order, then the GT."""
    names = image_files(read_meta(scene_dir))
    return np.stack([np.asarray(Image.open(scene_dir / n).convert("RGB")) for n in names])
