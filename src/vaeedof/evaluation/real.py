"""Real focus stacks without ground truth (`vaeedof real-sheet`): a contact sheet of a few
inputs beside the model's and the baselines' fusions, for people to judge: per stack a row of
whole images and a row of 1:1 crops where focus changes most between the inputs (where halos,
seams and defocused copies of sharp objects show)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import VaeedofError
from ..fusion.align import align_stack
from ..fusion.files import load_stack
from ..images import to_pil
from ..render.contact_sheet import labelled_row, save_rows
from .baselines import fuse_each, fusion_methods


def load_real_stack(paths: list[Path]) -> list[torch.Tensor]:
    """A real stack as every method gets it: float frames, aligned first when they moved (as
    `vaeedof fuse` does by default; registered stacks stay untouched)."""
    images = [image.pixels for image in load_stack(paths)]
    return align_stack(images, [path.name for path in paths], mode="auto")[0]


def focus_transition_window(images: list[torch.Tensor], side: int) -> tuple[int, int]:
    """(top, left) of the side x side window that best holds a focus boundary: parts where one
    input is clearly the sharpest and parts where another is (where halos, seams and defocused
    copies of sharp objects show)."""
    import cv2

    fine = max(side // 8, 3)
    energy = []
    for image in images:
        grey = image.mean(0).numpy().astype(np.float32)
        energy.append(cv2.blur(np.abs(cv2.Laplacian(grey, cv2.CV_32F)), (fine, fine)) + 1e-4)
    energy = np.stack(energy)
    # How much each input dominates each place, then its share over each window: a window scores
    # what all but its most dominant input hold, so only windows with two sharp regions score.
    dominance = np.maximum(np.log(energy / energy.mean(axis=0, keepdims=True)), 0)
    held = np.stack([cv2.blur(d, (side, side)) for d in dominance])
    spread = held.sum(axis=0) - held.max(axis=0)
    height, width = spread.shape
    half = side // 2
    inner = spread[half:max(height - side + half, half) + 1, half:max(width - side + half, half) + 1]
    y, x = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int(y), int(x)


def _crop(image: torch.Tensor, top: int, left: int, side: int) -> torch.Tensor:
    return image[:, top:top + side, left:left + side]


def real_stacks_sheet(stacks: list[tuple[str, list[Path]]], fuser, path: Path, tile: int = 160,
                      shown_inputs: int = 3, evaluate: dict | None = None) -> None:
    """Rows: a few inputs | the model, the baselines, peers and external commands (`evaluate`),
    for real focus stacks (no GT); a method that failed on a stack is a grey tile saying so."""
    methods = fusion_methods(fuser, evaluate)
    rows = []
    for name, stack in stacks:
        images = load_real_stack(stack)
        with torch.no_grad():
            fused, _ = fuse_each(methods, images, name)  # each failure is logged by fuse_each
        results = [(method, fused[method]) if method in fused else
                   (f"{method} failed", torch.full_like(images[0], 0.5)) for method in methods]
        picks = np.linspace(0, len(images) - 1, min(shown_inputs, len(images))).round().astype(int)
        shown = [(stack[i].name, images[i]) for i in picks] + results
        height = round(tile * images[0].shape[1] / images[0].shape[2])
        labelled = [(f"{name}: {label}"[:26], to_pil(image)) for label, image in shown]
        rows.append(labelled_row(labelled, tile, height))
        side = min(tile, *images[0].shape[1:])
        top, left = focus_transition_window(images, side)
        crops = [(f"1:1 at {left},{top}"[:26], to_pil(_crop(image, top, left, side))) for _, image in shown]
        rows.append(labelled_row(crops, tile, tile))
    if not rows:
        raise VaeedofError("no real stacks found")
    save_rows(rows, path)
