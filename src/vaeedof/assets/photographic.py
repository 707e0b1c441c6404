"""Photographic assets: subjects and backgrounds cut from real photographs.

Subjects are square photo crops cut out with the procedural mattes (soft and fur-like edges,
holes); backgrounds are larger photo crops. Crops are downsampled (antialiased) to their asset
size, which also removes the photographs' JPEG noise, and the sharpest of a few random candidates
is kept: several photographs have a blurred background of their own, which would teach nothing
about focus. Train and test pools are disjoint by photograph (`test_photos`).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .. import atomic
from ..errors import VaeedofError
from ..hashing import sha256_file
from ..logs import progress
from . import procedural
from .registry import RemoteAsset

_ROLE_CODES = {"subject": 1, "background": 2}


def photo_stem(asset: RemoteAsset) -> str:
    return asset.name.split("/", 1)[1]


def split_photos(photos: list[RemoteAsset], test_photos: list[str]) -> dict[str, list[RemoteAsset]]:
    """Train and test photographs; every held-out name must be a known photograph."""
    stems = {photo_stem(p) for p in photos}
    unknown = sorted(set(test_photos) - stems)
    if unknown:
        raise VaeedofError(f"params.yaml: key 'assets.photographic.test_photos': unknown photograph "
                           f"'{unknown[0]}' (known: {', '.join(sorted(stems))})")
    test = [p for p in photos if photo_stem(p) in test_photos]
    train = [p for p in photos if photo_stem(p) not in test_photos]
    if not train or not test:
        raise VaeedofError("params.yaml: key 'assets.photographic.test_photos': train and test "
                           "each need at least one photograph")
    return {"train": train, "test": test}


def open_photo(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            # Phones store portrait shots sideways plus an EXIF rotation.
            return ImageOps.exif_transpose(image).convert("RGB")
    except OSError as exc:
        raise VaeedofError(f"{path}: unreadable photograph ({exc})") from None


def sharpness(rgb: np.ndarray) -> float:
    """Mean absolute Laplacian of the luminance: high where the crop holds in-focus detail."""
    grey = rgb.astype(np.float32).mean(axis=-1)
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(np.abs(lap).mean())


def sharpest_crop(photo: Image.Image, rng: np.random.Generator, fraction: list[float], size: int,
                  candidates: int) -> np.ndarray:
    """The sharpest of `candidates` random square crops (side a `fraction` of the photograph's
    short side), each resized to size x size; uint8 RGB."""
    short = min(photo.size)
    best, best_score = None, -1.0
    for _ in range(candidates):
        side = max(int(rng.uniform(*fraction) * short), 8)
        left = int(rng.integers(0, photo.width - side + 1))
        top = int(rng.integers(0, photo.height - side + 1))
        crop = photo.resize((size, size), Image.Resampling.LANCZOS,
                            box=(left, top, left + side, top + side), reducing_gap=3.0)
        rgb = np.asarray(crop)
        score = sharpness(rgb)
        if score > best_score:
            best, best_score = rgb, score
    return best


def _rng(seed: int, role: str, stem: str, index: int) -> np.random.Generator:
    # Keyed by the photograph's name: adding or holding out a photograph changes no other asset.
    return np.random.default_rng([seed, 2000 + _ROLE_CODES[role], zlib.crc32(stem.encode()), index])


def _entry(asset_id: str, path: Path, image: Image.Image, photo: RemoteAsset) -> dict:
    return {"id": asset_id, "path": str(path), "sha256": sha256_file(path),
            "width": image.width, "height": image.height,
            "credit": f"{photo.credit}, {photo.license}"}


def make_assets(params: dict, photos: list[RemoteAsset], paths: dict[str, Path], split: str,
                out: Path, roles: tuple[str, ...]) -> dict[str, list[dict]]:
    """The `roles` ("subject", "background") of one split from its photographs (`paths`: asset
    name -> verified local file)."""
    cfg = params["assets"]["photographic"]
    background_size = max(params["render"]["resolution"], 64)
    counts = {role: cfg[f"{role}s_per_photo"] if role in roles else 0 for role in _ROLE_CODES}
    made: dict[str, list[dict]] = {"subjects": [], "backgrounds": []}
    for photo in progress(photos, desc=f"photographs/{split}"):
        stem = photo_stem(photo)
        image = open_photo(paths[photo.name])
        for index in range(counts["subject"]):
            rng = _rng(params["seed"], "subject", stem, index)
            rgb = sharpest_crop(image, rng, cfg["subject_crop"], cfg["subject_size"],
                                cfg["candidates"])
            alpha = procedural.matte(rng, cfg["subject_size"])
            rgba = np.dstack([rgb, (alpha * 255 + 0.5).astype(np.uint8)])
            subject = Image.fromarray(rgba, mode="RGBA")
            path = out / "subjects" / split / f"{stem}_s{index:02d}.png"
            atomic.write_pil_image(subject, path)
            made["subjects"].append(_entry(f"photo/{split}/{stem}_s{index:02d}", path, subject, photo))
        for index in range(counts["background"]):
            rng = _rng(params["seed"], "background", stem, index)
            rgb = sharpest_crop(image, rng, cfg["background_crop"], background_size,
                                cfg["candidates"])
            background = Image.fromarray(rgb, mode="RGB")
            path = out / "backgrounds" / split / f"{stem}_b{index:02d}.png"
            atomic.write_pil_image(background, path)
            made["backgrounds"].append(
                _entry(f"photo/{split}/{stem}_b{index:02d}", path, background, photo))
    return made
