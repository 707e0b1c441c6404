"""Contact sheets for people to look at: one row per scene, its focus renders, GT and index."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .. import atomic
from . import layout

# Distinct colours for plane indices (last: no plane).
_PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60],
                     [250, 190, 212], [0, 128, 128], [220, 190, 255], [170, 110, 40]], np.uint8)


def colorize_index(index: np.ndarray) -> np.ndarray:
    rgb = _PALETTE[np.minimum(index, len(_PALETTE) - 1)]
    rgb[index == 255] = 0
    return rgb


def scene_row(scene_dir: Path, tile: int) -> Image.Image:
    meta = layout.read_meta(scene_dir, needs=("planes",))
    names = layout.image_files(meta)
    tiles = [Image.open(scene_dir / n).convert("RGB") for n in names]
    index = layout.load_index(scene_dir)
    tiles.append(Image.fromarray(colorize_index(index)))
    labels = [f"focus {meta['planes'][k]['distance_m']:.1f} m" for k in meta["focus_order"]]
    labels += ["GT (no DOF)", "plane index"]
    return labelled_row(list(zip(labels, tiles, strict=True)), tile, tile)


def labelled_row(items: list[tuple[str, Image.Image]], width: int, height: int) -> Image.Image:
    """Images side by side, each resized to width x height under a one-line label."""
    row = Image.new("RGB", (width * len(items), height + 14), (255, 255, 255))
    draw = ImageDraw.Draw(row)
    for index, (label, image) in enumerate(items):
        row.paste(image.resize((width, height), Image.Resampling.LANCZOS), (index * width, 14))
        draw.text((index * width + 2, 1), label, fill=(0, 0, 0))
    return row


def save_rows(rows: list[Image.Image], dest: str | os.PathLike, empty_note: str = "nothing to show") -> None:
    """Stack rows into one PNG, atomically (no rows: a small image saying so)."""
    if not rows:
        sheet = Image.new("RGB", (320, 20), (255, 255, 255))
        ImageDraw.Draw(sheet).text((2, 4), empty_note, fill=(0, 0, 0))
    else:
        sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
        y = 0
        for row in rows:
            sheet.paste(row, (0, y))
            y += row.height
    atomic.write_pil_image(sheet, dest)


def write(scene_dirs: list[Path], dest: str | os.PathLike, tile: int = 128) -> None:
    save_rows([scene_row(d, tile) for d in scene_dirs], dest, "no scenes in this split")
