"""What `--align auto` decides on stacks whose motion is known: registered ones (gt-stacks, the
Lytro, MFFW and MFI-WHU pairs; any warp there is false), the hand-held pcb stack, the keyboard
focal sweep, hand-held copies of each gt-stack's far-focus frame (shifted 2-5 px, rotated 0.3-1
degree, the middle copy in place), and, given `--photos`, the stacks `photo_stacks.py`
makes from the held-out photographs (a smooth depth map, so neighbours share sharp detail), both
registered and moved. Where the motion is made here, the aligner's corner error is known too.

Per stack: whether `auto` warped, the apparent motion (median block shift of the neighbour pair
where it is largest: what a fit over every block reads as motion), and the evidence
(`vaeedof.fusion.evidence`) of the pair that comes closest to it. Decisions only: nothing is fused.
Writes docs/alignment-decisions.csv (atomically), from which `vaeedof readme docs/alignment.md`
regenerates the table in docs/alignment.md; prints the rows. Asserts nothing.

    python -m experiments.handheld.align_decisions DATA --photos PHOTOS
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from experiments.handheld.measures import corner_error
from experiments.handheld.photo_stacks import STREAM, make_stack  # the same stacks
from experiments.photo_stacks.stacks import held_out_crops
from vaeedof import atomic
from vaeedof import params as params_module
from vaeedof.fusion.align import align_stack, motion_evidence
from vaeedof.fusion.evidence import AGREEING_SHARE, MIN_BLOCKS
from vaeedof.fusion.files import expand_inputs, load_stack

OUT = Path(__file__).resolve().parents[2] / "docs" / "alignment-decisions.csv"
COLUMNS = ["set", "stack", "kind", "frames", "warped", "apparent_px", "evidence_px", "sharp_blocks",
           "agreeing", "error_px", "seconds"]


def real_stacks(data: Path) -> list[tuple[str, str, list[Path]]]:
    """(set, kind, frames) of every stack under `data` whose motion is known."""
    stacks = []
    for size in ("s256", "s512"):
        for folder in sorted((data / "gt-stacks" / size).glob("s*")):
            stacks.append((f"gt-stacks/{size}", "registered", sorted(folder.glob("focus_*.png"))))
    for name in ("Lytro", "MFFW", "MFI-WHU"):
        for folder in sorted(p for p in (data / "real" / name).glob("*") if p.is_dir()):
            stacks.append((f"real/{name}", "registered", expand_inputs([str(folder)])))
    for name, kind in (("pcb", "hand-held"), ("keyboard", "focal sweep")):
        folder = data / "real" / "stacks" / name
        if folder.is_dir():
            stacks.append((f"real/stacks/{name}", kind, expand_inputs([str(folder)])))
    return [s for s in stacks if len(s[2]) >= 2]


def hand_held_copies(source: np.ndarray, rng: np.random.Generator) -> tuple[list[torch.Tensor], list]:
    """Three copies of a frame, the outer two moved (2-5 px, 0.3-1 degree about the centre);
    also the true reference -> frame transforms."""
    height, width = source.shape[:2]
    frames, truth = [], []
    for k in range(3):
        matrix = np.eye(3)
        if k != 1:
            angle = rng.uniform(0.3, 1.0) * rng.choice([-1, 1])
            matrix[:2] = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)
            length, direction = rng.uniform(2, 5), rng.uniform(0, 2 * math.pi)
            matrix[:2, 2] += (length * math.cos(direction), length * math.sin(direction))
        moved = cv2.warpAffine(source, matrix[:2], (width, height),
                               flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
        frames.append(torch.from_numpy(np.ascontiguousarray(moved.transpose(2, 0, 1))))
        truth.append(np.linalg.inv(matrix))  # frame k holds source(M p): reference -> frame is M^-1
    return frames, truth


def decide(frames: list[torch.Tensor], names: list[str]) -> dict:
    started = time.perf_counter()
    _, alignment = align_stack(frames, names, "auto")
    seconds = time.perf_counter() - started
    evidence = motion_evidence(frames, names)
    # the pair closest to confirming: enough sharp blocks that agree, then the largest motion
    closest = max(evidence, key=lambda p: (p.sharp_blocks >= MIN_BLOCKS and p.agreeing >= AGREEING_SHARE,
                                           p.motion_px))
    warped = alignment is not None and alignment.applied and \
        any(not np.allclose(t, np.eye(3)) for t in alignment.transforms)
    return {"frames": len(frames), "warped": int(warped),
            "apparent_px": f"{max(p.apparent_px for p in evidence):.2f}",
            "evidence_px": f"{closest.motion_px:.2f}", "sharp_blocks": closest.sharp_blocks,
            "agreeing": f"{closest.agreeing:.2f}", "seconds": f"{seconds:.2f}", "_alignment": alignment}


def _error(row: dict, truth: list, size: tuple[int, int]) -> str:
    """The largest corner error (px) of the frames' estimated transforms, when `auto` warped."""
    if not row["warped"]:
        return ""
    estimated = row["_alignment"].transforms
    return f"{max(corner_error(e, t, *size) for e, t in zip(estimated, truth, strict=True)):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="the folder holding gt-stacks/ and real/")
    parser.add_argument("--photos", type=Path, help="the held-out photographs (<stem>.jpg), as "
                        "handheld_photo_stacks.py takes them")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rows = []
    for set_name, kind, paths in real_stacks(args.data):
        row = decide([image.data for image in load_stack(paths)], [p.name for p in paths])
        rows.append({"set": set_name, "stack": paths[0].parent.name, "kind": kind, "error_px": "", **row})
    gt_frames = [sorted(p.glob("focus_*.png"))[-1] for size in ("s256", "s512")
                 for p in sorted((args.data / "gt-stacks" / size).glob("s*"))]
    for index, path in enumerate(gt_frames):
        source = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255
        frames, truth = hand_held_copies(source, np.random.default_rng(index))
        row = decide(frames, ["a", "b", "c"])
        rows.append({"set": f"hand-held copies ({path.parent.parent.name})", "stack": path.parent.name,
                     "kind": "hand-held", "error_px": _error(row, truth, source.shape[:2]), **row})
    if args.photos:
        params = params_module.load(args.params)
        for stack, photo, rng in held_out_crops(args.photos, params, 2, STREAM):
            _, registered, moved, truth = make_stack(photo, rng, 512, 4.0, params["evaluate"]["handheld"])
            names = [f"{stack}-{k}" for k in range(len(moved))]
            rows.append({"set": "photo stacks, registered", "stack": stack, "kind": "registered",
                         "error_px": "", **decide(registered, names)})
            row = decide(moved, names)
            rows.append({"set": "photo stacks, hand-held", "stack": stack, "kind": "hand-held",
                         "error_px": _error(row, truth, moved[0].shape[-2:]), **row})
    for row in rows:
        row.pop("_alignment")
        print(" ".join(f"{key}={row[key]}" for key in COLUMNS), flush=True)
    atomic.write_csv(args.out, rows, COLUMNS)
    print(f"wrote {args.out}; regenerate the docs: vaeedof readme docs/alignment.md")


if __name__ == "__main__":
    main()
