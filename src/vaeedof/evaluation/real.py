"""Real focus stacks without ground truth (`vaeedof real-sheet`): a contact sheet of a few
inputs beside the model's and the baselines' fusions, for people to judge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import VaeedofError
from ..fusion.files import load_stack
from ..images import to_pil
from ..render.contact_sheet import labelled_row, save_rows
from .baselines import fusion_methods


def real_stacks_sheet(stacks: list[tuple[str, list[Path]]], fuser, path: Path, tile: int = 160,
                      shown_inputs: int = 3) -> None:
    """Rows: a few inputs | the model and the baselines, for real focus stacks (no GT)."""
    methods = fusion_methods(fuser)
    rows = []
    for name, stack in stacks:
        images = [im.pixels for im in load_stack(stack)]
        with torch.no_grad():
            results = [(name, fn(images)) for name, fn in methods.items()]
        picks = np.linspace(0, len(images) - 1, min(shown_inputs, len(images))).round().astype(int)
        shown = [(stack[i].name, images[i]) for i in picks] + results
        height = round(tile * images[0].shape[1] / images[0].shape[2])
        labelled = [(f"{name}: {label}"[:26], to_pil(image)) for label, image in shown]
        rows.append(labelled_row(labelled, tile, height))
    if not rows:
        raise VaeedofError("no real stacks found")
    save_rows(rows, path)
