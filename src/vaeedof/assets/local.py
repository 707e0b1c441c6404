"""Local datasets the user obtained (Distinctions-646, AM-2k, BG-20K, LIU4K-v2, PhotoMatte85...):
a folder or an archive, validated and indexed.

Subjects must carry a matte: either images with an alpha channel, or a folder pair such as
`fg/` + `alpha/` (also `image(s)/`, `original/`, `merged/` with `mask/`, `matte/`), matched by
file stem; pairs are composed into RGBA PNGs. Backgrounds are any readable images.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .. import atomic
from ..errors import VaeedofError
from ..hashing import sha256_file
from ..logs import get_logger
from .archives import EXTRACT_STAGE, extract, is_archive, walk_files

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}
FOREGROUND_DIRS = {"fg", "foreground", "image", "images", "original", "merged", "img"}
ALPHA_DIRS = {"alpha", "mask", "masks", "matte", "mattes"}


def materialise(source: str, resources_dir: Path, max_bytes: int) -> Path:
    """A folder to read from: the folder itself, or the archive extracted under resources/."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if is_archive(path):
        tag = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
        dest = resources_dir / "local" / f"{path.name.split('.')[0]}-{tag}"
        stamp = dest / ".extracted-from"
        if not (stamp.exists() and stamp.read_text() == sha256_file(path)):
            get_logger().info("extracting %s", path)
            if stamp.exists() and atomic.owner_of(dest) is None:
                atomic.mark_owner(dest, EXTRACT_STAGE)  # extracted by an earlier version: ours to replace
            extract(path, dest, max_bytes)
            atomic.write_text(stamp, sha256_file(path))
        return dest
    raise VaeedofError(f"{path}: not a folder or a supported archive (.zip, .tar[.gz|.bz2|.xz])")


def _images(root: Path) -> list[Path]:
    return [p for p in walk_files(root) if p.suffix.lower() in IMAGE_SUFFIXES]


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
        return image
    except (UnidentifiedImageError, OSError) as exc:
        raise VaeedofError(f"{path}: unreadable image ({exc})") from None


def _entry(asset_id: str, path: Path, size: tuple[int, int]) -> dict:
    return {"id": asset_id, "path": str(path), "sha256": sha256_file(path),
            "width": size[0], "height": size[1]}


def _find_pairs(root: Path) -> list[tuple[Path, Path]] | None:
    """(foreground, alpha) pairs when root holds a foreground folder and an alpha folder."""
    folders = {p.name.lower(): p for p in root.rglob("*") if p.is_dir()}
    fg = next((folders[n] for n in sorted(folders) if n in FOREGROUND_DIRS), None)
    alpha = next((folders[n] for n in sorted(folders) if n in ALPHA_DIRS), None)
    if fg is None or alpha is None:
        return None
    alphas = {p.stem: p for p in _images(alpha)}
    pairs = [(p, alphas[p.stem]) for p in _images(fg) if p.stem in alphas]
    missing = [p.name for p in _images(fg) if p.stem not in alphas]
    if missing:
        raise VaeedofError(f"{fg}: no matte in {alpha} for {len(missing)} images, e.g. {missing[0]}")
    return pairs


def index_subjects(source: str, split: str, resources_dir: Path, min_size: int,
                   max_bytes: int) -> list[dict]:
    root = materialise(source, resources_dir, max_bytes)
    out_dir = resources_dir / "assets" / "local_subjects" / split
    entries = []
    pairs = _find_pairs(root)
    if pairs is not None:
        for fg_path, alpha_path in pairs:
            rgb = _open(fg_path).convert("RGB")
            alpha = _open(alpha_path).convert("L")
            if alpha.size != rgb.size:
                raise VaeedofError(f"{alpha_path}: matte size {alpha.size} != image {rgb.size}")
            _check_size(fg_path, rgb.size, min_size)
            rgba = Image.merge("RGBA", (*rgb.split(), alpha))
            dest = out_dir / f"{fg_path.stem}.png"
            atomic.write_pil_image(rgba, dest)
            entries.append(_entry(f"local/{split}/{fg_path.stem}", dest, rgba.size))
    else:
        for path in _images(root):
            image = _open(path)
            if "A" not in image.getbands() and "transparency" not in image.info:
                raise VaeedofError(
                    f"{path}: subject image has no alpha channel (need RGBA, or fg/ + alpha/ folders)"
                )
            alpha = np.asarray(image.convert("RGBA"))[..., 3]
            if alpha.max() == 0:
                raise VaeedofError(f"{path}: subject alpha is empty (fully transparent)")
            _check_size(path, image.size, min_size)
            entries.append(_entry(f"local/{split}/{path.stem}", path, image.size))
    if not entries:
        raise VaeedofError(f"{source}: no subject images found")
    return entries


def _check_size(path: Path, size: tuple[int, int], min_size: int) -> None:
    if min(size) < min_size:
        raise VaeedofError(f"{path}: {size[0]}x{size[1]} is smaller than {min_size} px")


def index_backgrounds(source: str, split: str, resources_dir: Path, min_size: int,
                      max_bytes: int) -> list[dict]:
    """Backgrounds smaller than `min_size` (the render resolution) are skipped with a warning."""
    root = materialise(source, resources_dir, max_bytes)
    entries, small = [], []
    for path in _images(root):
        image = _open(path)
        if min(image.size) < min_size:
            small.append(path.name)
            continue
        entries.append(_entry(f"local/{split}/{path.stem}", path, image.size))
    if small:
        get_logger().warning("%s: skipped %d backgrounds under %d px, e.g. %s",
                             source, len(small), min_size, small[0])
    if not entries:
        raise VaeedofError(f"{source}: no background images of at least {min_size} px")
    return entries
