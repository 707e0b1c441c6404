"""Hand-held focus stacks made from the held-out test photographs, where alignment can be judged:
the rendered test split cannot (`observability.py`: most of its frames hold
nothing in focus), real stacks have no ground truth.

Per held-out photograph (`assets.photographic.test_photos`), `--crops` sharpest square crops at
`--size` px are the ground truth. A smooth random depth map (low-frequency noise plus a slope)
and 3-5 focus depths spread over it give the frames: each pixel blurred by a Gaussian whose sigma
grows linearly with its depth's distance from the frame's focus (up to `--max-sigma` px), by
normalised convolution over 16 depth layers, so consecutive frames share detail as a focus
stack shot for stacking does. The frames, stored as 8-bit, are then moved as the hand-held
variant moves the rendered ones (`evaluate.handheld`: focus breathing, shake; seeded; the middle
frame, the reference, keeps its geometry).

Each stack is fused registered (`--align off` and `auto`), hand-held as it is, and hand-held
with `--align auto`, by GFF and by the hybrid model; PSNR against the ground truth over the
inner 90 % (uncovered borders are filled). Also the alignment's corner error against the true
transforms and its time beside the fusion's. Prints the summary; `--record` writes
handheld_photo_stacks.csv beside this script and the `handheld-photos` figure's table in
results/. Asserts nothing. From the project's root:

    python -m experiments.handheld.photo_stacks PHOTOS \\
        --checkpoint src/vaeedof/release/fusion_release.safetensors --record
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from experiments.handheld.measures import corner_error, photo_stacks_table
from experiments.photo_stacks.stacks import (
    SUPERSAMPLE,
    depth_map,
    focus_frame,
    held_out_crops,
    reduce,
    sharp_crop,
    to_uint8_tensor,
)
from experiments.record import add_arguments, finish, run_study
from vaeedof import params as params_module
from vaeedof.evaluation.baselines import guided_filter_fusion
from vaeedof.evaluation.handheld import hand_held_transforms
from vaeedof.fusion.align import align_stack, rescale_transform, warp
from vaeedof.fusion.loader import choose_checkpoint, load_fuser
from vaeedof.images import psnr

CSV = Path(__file__).parent / "handheld_photo_stacks.csv"
STREAM = 43  # this script's random stream (experiments/photo_stacks/run.py uses 47)


def make_stack(photo, rng: np.random.Generator, size: int, max_sigma: float, cfg: dict):
    """(ground truth, registered frames, hand-held frames, true transforms) of one stack. Made at
    SUPERSAMPLE times the size and reduced, moved at that size too: a camera forms each frame
    optically, so only the aligner's resampling should show, not the generator's."""
    big = size * SUPERSAMPLE
    sharp = sharp_crop(photo, rng, size)
    depth = depth_map(big, rng)
    count = int(rng.integers(3, 6))
    frames = [focus_frame(sharp, depth, focus, max_sigma * SUPERSAMPLE)
              for focus in np.linspace(0.05, 0.95, count)]
    transforms = hand_held_transforms(count, (big, big), rng, cfg["max_scale"],
                                      cfg["max_shift_px"] * SUPERSAMPLE, cfg["max_rotation_deg"])
    flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    moved = [cv2.warpAffine(f, m[:2], (big, big), flags=flags, borderMode=cv2.BORDER_REFLECT)
             for f, m in zip(frames, transforms, strict=True)]
    truth = [np.linalg.inv(rescale_transform(m, 1 / SUPERSAMPLE)) for m in transforms]
    return (torch.from_numpy(reduce(sharp)).permute(2, 0, 1), [to_uint8_tensor(reduce(f)) for f in frames],
            [to_uint8_tensor(reduce(f)) for f in moved], truth)


def _inner_psnr(image: torch.Tensor, gt: torch.Tensor) -> float:
    margin = round(0.05 * gt.shape[-1])
    inner = (..., slice(margin, -margin), slice(margin, -margin))
    return psnr(image.float().clamp(0, 1)[inner], gt[inner])


def measure(name: str, gt, registered, moved, truth, fusers: dict) -> list[dict]:
    """One row per method and condition."""
    names = [f"{name}-{k}" for k in range(len(moved))]
    started = time.perf_counter()
    aligned, alignment = align_stack(moved, names, "auto")
    align_s = time.perf_counter() - started
    kept, _ = align_stack(registered, names, "auto")
    untouched = all(a is b for a, b in zip(kept, registered, strict=True))
    height, width = gt.shape[-2:]
    warped_true = warp(moved, truth)
    error = max(corner_error(t, u, height, width) for t, u in
                zip(alignment.transforms if alignment else [np.eye(3)] * len(moved), truth, strict=True))
    rows = []
    for method, fuse in fusers.items():
        timed = {}
        conditions = (("registered", registered), ("hand-held, unaligned", moved),
                      ("hand-held, true transforms", warped_true), ("hand-held, aligned", aligned))
        for condition, frames in conditions:
            started = time.perf_counter()
            timed[condition] = (_inner_psnr(fuse(frames), gt), time.perf_counter() - started)
        # auto on the registered stack: the very same frames when it leaves them untouched
        auto = timed["registered"][0] if untouched else _inner_psnr(fuse(kept), gt)
        rows.append({"stack": name, "frames": len(moved), "method": method,
                     "registered": round(timed["registered"][0], 3), "registered_auto": round(auto, 3),
                     "unaligned": round(timed["hand-held, unaligned"][0], 3),
                     "true_transforms": round(timed["hand-held, true transforms"][0], 3),
                     "aligned": round(timed["hand-held, aligned"][0], 3),
                     "aligned_applied": int(bool(alignment and alignment.applied)),
                     "corner_error_px": round(error, 3), "align_s": round(align_s, 3),
                     "fuse_s": round(timed["hand-held, aligned"][1], 3)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="folder holding the held-out photographs (<stem>.jpg)")
    parser.add_argument("--crops", type=int, default=2, help="stacks per photograph")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--max-sigma", type=float, default=4.0, help="blur sigma (px) a full depth away")
    add_arguments(parser, CSV)
    args = parser.parse_args()
    params = params_module.load(args.params)
    fuser = load_fuser(args.checkpoint, mode="hybrid")
    model = Path(choose_checkpoint(args.checkpoint)[0]).name

    def hybrid(frames):
        with torch.inference_mode():
            return fuser.fuse(frames)

    def gff(frames):
        return guided_filter_fusion([f.float() / 255 for f in frames])

    fusers = {"gff": gff, f"hybrid ({model})": hybrid}
    rows = []
    for stack, photo, rng in held_out_crops(args.photos, params, args.crops, STREAM):
        made = make_stack(photo, rng, args.size, args.max_sigma, params["evaluate"]["handheld"])
        rows += measure(stack, *made, fusers)
    finish("handheld-photos", photo_stacks_table(rows), rows, CSV, args.record)


if __name__ == "__main__":
    run_study(main, "handheld_photo_stacks")
