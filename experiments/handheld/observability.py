"""How much of a rendered hand-held stack's motion can be measured at all: per frame, the share
of its pixels in focus (from index.png), the true displacement, and the error of two estimates
of its motion against the truth the hand-held variant recorded:

- `estimator_error_px`: `vaeedof.fusion.align.estimate` (what `vaeedof fuse --align on` uses);
- `oracle_error_px`: an oracle that knows what no aligner knows, the ground truth, the plane map
  and every plane's thin-lens blur radius: it synthesises the frame (the ground truth's planes
  blurred by discs of those radii, composited far to near) and registers the frame to that
  synthesis with OpenCV's ECC (affine, projected to a similarity). `oracle_registered_px` is the
  same on the registered copy, where the truth is no motion (its bias).

Per scene, GFF of the hand-held frames warped back with the *true* transforms, beside GFF of the
registered frames and of the hand-held frames as they are: what a perfect estimate would give;
and what `--align auto` does to the registered frames (left untouched: the same frames, so the same
fused result; else GFF of what it made of them).
Prints a summary; `--record` writes handheld_observability.csv and handheld_true_transforms.csv
beside this script (rows of other `--split` labels are kept) and the `handheld-observability`
figure's table in results/. Asserts nothing. From the project's root:

    python -m experiments.handheld.observability data/mattingmfif/test data/handheld/test \
        --split procedural --record
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy.signal import fftconvolve

from experiments.handheld.measures import (
    corner_error,
    defocus_radius_px,
    observability_summary,
    observability_table,
)
from experiments.record import figure, merge_rows
from vaeedof.errors import VaeedofError
from vaeedof.evaluation.baselines import guided_filter_fusion
from vaeedof.fusion.align import align_stack, estimate, warp
from vaeedof.images import psnr
from vaeedof.logs import progress
from vaeedof.render import layout

HERE = Path(__file__).parent
FRAMES_CSV, SCENES_CSV = "handheld_observability.csv", "handheld_true_transforms.csv"


def _disc_blur(image: np.ndarray, radius: float) -> np.ndarray:
    if radius < 0.5:
        return image
    reach = int(np.ceil(radius)) + 1
    y, x = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    kernel = np.clip(radius + 0.5 - np.hypot(x, y), 0, 1)
    pad = reach + 1
    padded = np.pad(image, pad, mode="reflect") if pad < min(image.shape) else np.pad(image, pad, mode="edge")
    return fftconvolve(padded, kernel / kernel.sum(), mode="same")[pad:-pad, pad:-pad]


def synthesise(gt: np.ndarray, index: np.ndarray, meta: dict, frame: int) -> np.ndarray:
    """The frame focused on planes[frame] from the ground truth, plane by plane far to near
    (the farthest visible plane fills what the nearer ones hide)."""
    depth = [plane["distance_m"] for plane in meta["planes"]]
    visible = [p for p in np.argsort(depth)[::-1] if (index == p).any()]
    out = None
    for order, plane in enumerate(visible):
        alpha = np.ones_like(gt) if order == 0 else (index == plane).astype(np.float64)
        radius = defocus_radius_px(meta["camera"], depth[plane], depth[frame], meta["render"]["resolution"])
        layer, cover = _disc_blur(alpha * gt, radius), _disc_blur(alpha, radius)
        out = layer if out is None else out * (1 - cover) + layer
    return out.astype(np.float32)


def _ecc_similarity(target: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """T with moving(T p) ~ target(p); identity where ECC does not converge."""
    affine = np.eye(2, 3, dtype=np.float32)
    try:
        _, affine = cv2.findTransformECC(target, moving, affine, cv2.MOTION_AFFINE,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 300, 1e-7), None, 5)
    except cv2.error:
        return np.eye(3)
    a, b = (affine[0, 0] + affine[1, 1]) / 2, (affine[1, 0] - affine[0, 1]) / 2
    return np.array([[a, -b, affine[0, 2]], [b, a, affine[1, 2]], [0, 0, 1.0]])


def _grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), np.float32) / 255


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255


def _gff_psnr(frames: list[np.ndarray], transforms: list[np.ndarray], gt: np.ndarray) -> float:
    """GFF of the frames warped back as the aligner warps them (`align.apply`), PSNR against gt."""
    import torch

    tensors = [torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1) for f in frames]
    fused = guided_filter_fusion(warp(tensors, transforms)).clamp(0, 1)
    return psnr(fused, torch.from_numpy(gt).permute(2, 0, 1))


def scene_rows(registered: Path, handheld: Path, split: str) -> tuple[list[dict], dict]:
    import torch

    meta = layout.read_meta(handheld)
    if "handheld" not in meta:
        raise VaeedofError(f"{handheld / layout.SCENE_FILE}: no hand-held transforms "
                           "(not a split written by vaeedof handheld)")
    order = meta["focus_order"]
    truth = [np.linalg.inv(np.array(m)) for m in meta["handheld"]["transforms"]]  # frame(T p) = rendered(p)
    gt_grey = _grey(registered / layout.GT_FILE)
    index = layout.load_index(registered)
    height, width = index.shape
    moved = [_rgb(handheld / layout.focus_file(k)) for k in order]
    reference = (len(order) - 1) // 2
    tensors = [torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1) for f in moved]
    try:
        estimated = estimate(tensors, [str(k) for k in order]).transforms
    except VaeedofError:
        estimated = None
    rows = []
    for position, frame in enumerate(order):
        synthetic = synthesise(gt_grey, index, meta, frame)
        oracle = _ecc_similarity(synthetic, moved[position].mean(2))
        bias = _ecc_similarity(synthetic, _grey(registered / layout.focus_file(frame)))
        rows.append({
            "split": split, "scene": handheld.name, "frame": frame,
            "is_reference": int(position == reference),
            "in_focus_fraction": round(float((index == frame).mean()), 4),
            "motion_px": round(corner_error(np.eye(3), truth[position], height, width), 3),
            "estimator_error_px": "" if estimated is None else
            round(corner_error(estimated[position], truth[position], height, width), 3),
            "oracle_error_px": round(corner_error(oracle, truth[position], height, width), 3),
            "oracle_registered_px": round(corner_error(bias, np.eye(3), height, width), 3),
        })
    gt = _rgb(registered / layout.GT_FILE)
    registered_frames = [_rgb(registered / layout.focus_file(k)) for k in order]
    identity = [np.eye(3)] * len(order)
    as_read = [torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1) for f in registered_frames]
    kept, _ = align_stack(as_read, [str(k) for k in order], "auto")
    untouched = all(a is b for a, b in zip(kept, as_read, strict=True))
    gff_registered = _gff_psnr(registered_frames, identity, gt)
    gff_auto = gff_registered if untouched else psnr(guided_filter_fusion(kept).clamp(0, 1),
                                                     torch.from_numpy(gt).permute(2, 0, 1))
    scene = {"split": split, "scene": handheld.name, "auto_leaves_registered": int(untouched),
             "gff_registered": round(gff_registered, 3), "gff_registered_auto": round(gff_auto, 3),
             "gff_true_transforms": round(_gff_psnr(moved, truth, gt), 3),
             "gff_unaligned": round(_gff_psnr(moved, identity, gt), 3)}
    return rows, scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("registered", type=Path, help="the rendered test split (e.g. data/mattingmfif/test)")
    parser.add_argument("handheld", type=Path, help="its hand-held copy (e.g. data/handheld/test)")
    parser.add_argument("--split", default="procedural", help="label of the rows (procedural, photographic)")
    parser.add_argument("--record", action="store_true", help=f"write {FRAMES_CSV} and {SCENES_CSV} "
                        "here and the figure's table in results/")
    args = parser.parse_args()
    frames, scenes = [], []
    for scene in progress(layout.rendered_scenes(args.handheld), desc="scenes"):
        if not (args.registered / scene.name / layout.SCENE_FILE).exists():
            raise VaeedofError(f"{args.registered / scene.name}: no registered scene for the hand-held one "
                               "(give the split the hand-held copy was made from)")
        rows, summary = scene_rows(args.registered / scene.name, scene, args.split)
        frames += rows
        scenes.append(summary)
    for key, value in observability_summary(frames, scenes).items():
        print(f"{key}: {value}")
    if args.record:
        all_frames = merge_rows(HERE / FRAMES_CSV, "split", args.split, frames)
        all_scenes = merge_rows(HERE / SCENES_CSV, "split", args.split, scenes)
        figure("handheld-observability", observability_table(all_frames, all_scenes))


if __name__ == "__main__":
    try:
        main()
    except VaeedofError as exc:  # bad input: one line naming it, no traceback
        raise SystemExit(f"handheld_observability: {exc}") from None
