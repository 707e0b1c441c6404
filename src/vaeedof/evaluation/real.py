"""Real focus stacks without ground truth (`vaeedof real-sheet`): a contact sheet of a few
inputs beside the model's and the baselines' fusions, for people to judge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import VaeedofError
from ..images import READ_SUFFIXES, read_image, to_pil
from ..render.contact_sheet import labelled_row, save_rows
from .baselines import fusion_methods


def find_stacks(folders: list[str], limit: int) -> list[list[Path]]:
    """Stacks (lists of image files) in the given folders: a folder of images is one stack, a
    folder of such folders holds several; at most `limit`, in name order."""
    def images_in(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in READ_SUFFIXES)

    stacks = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise VaeedofError(f"{folder}: real stack folder not found (evaluate.real_stacks)")
        direct = images_in(folder)
        candidates = [direct] if len(direct) >= 2 else [images_in(sub) for sub in sorted(folder.iterdir())
                                                        if sub.is_dir()]
        stacks += [c for c in candidates if len(c) >= 2]
    return stacks[:limit]


def real_stacks_sheet(stacks: list[list[Path]], fuser, path: Path, tile: int = 160,
                      shown_inputs: int = 3) -> None:
    """Rows: a few inputs | the model and the baselines, for real focus stacks (no GT)."""
    methods = fusion_methods(fuser)
    rows = []
    for stack in stacks:
        images = [read_image(p) for p in stack]
        if len({tuple(im.shape) for im in images}) > 1:
            raise VaeedofError(f"{stack[0].parent}: stack images differ in size")
        with torch.no_grad():
            results = [(name, fn(images)) for name, fn in methods.items()]
        picks = np.linspace(0, len(images) - 1, min(shown_inputs, len(images))).round().astype(int)
        shown = [(stack[i].name, images[i]) for i in picks] + results
        height = round(tile * images[0].shape[1] / images[0].shape[2])
        labelled = [(f"{stack[0].parent.name}: {label}"[:26], to_pil(image)) for label, image in shown]
        rows.append(labelled_row(labelled, tile, height))
    if not rows:
        raise VaeedofError("no real stacks found")
    save_rows(rows, path)
