"""`vaeedof handheld`: a hand-held copy of the rendered test split, to evaluate alignment.

Every focus frame of a scene is warped as a hand-held camera would have moved it, seeded per
scene: focus breathing (a scale drifting linearly across the stack, up to `max_scale`), shake
(shift up to `max_shift_px`, rotation up to `max_rotation_deg`). The middle frame of the focus
order, the reference alignment chains towards, is left as rendered, so the ground truth still
matches it. Warping reflects the image at its edges (the renders do not extend further). Each
scene folder has the rendered layout (`vaeedof.render.layout`), its scene.json records the
transforms; manifest.json is written last.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np

from .. import atomic
from ..logs import progress
from ..render import layout

STAGE = "handheld"  # the owner of the hand-held split's folder (atomic.OWNER_FILE)


def hand_held_transforms(count: int, size: tuple[int, int], rng: np.random.Generator,
                         max_scale: float, max_shift_px: float, max_rotation_deg: float) -> list[np.ndarray]:
    """3x3 maps, frame k holding rendered(M_k p) at p; identity for the middle frame."""
    height, width = size
    reference = (count - 1) // 2
    drift = rng.uniform(-max_scale, max_scale)  # total scale change across the stack
    centre = np.array([[1, 0, -(width - 1) / 2], [0, 1, -(height - 1) / 2], [0, 0, 1.0]])
    out = []
    for k in range(count):
        if k == reference:
            out.append(np.eye(3))
            continue
        scale = 1 + drift * (k - reference) / max(1, count - 1)
        angle = math.radians(rng.uniform(-max_rotation_deg, max_rotation_deg))
        cos, sin = scale * math.cos(angle), scale * math.sin(angle)
        matrix = np.linalg.inv(centre) @ np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]]) @ centre
        matrix[:2, 2] += rng.uniform(-max_shift_px, max_shift_px, 2)
        out.append(matrix)
    return out


def make_split(data_dir: str | os.PathLike, out_dir: str | os.PathLike, params: dict) -> Path:
    """Write the hand-held copy of every rendered scene of data_dir into out_dir
    (`evaluate.handheld` of the parameters, seeded by `seed`)."""
    cfg, seed = params["evaluate"]["handheld"], params["seed"]
    import cv2
    from PIL import Image

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    scenes = layout.rendered_scenes(data_dir)
    with atomic.atomic_directory(out_dir, STAGE, [data_dir]) as tmp:
        for index, scene in enumerate(progress(scenes, desc="hand-held")):
            meta = layout.read_meta(scene)
            rgb = [np.asarray(Image.open(scene / layout.focus_file(k)).convert("RGB"))
                   for k in meta["focus_order"]]
            rng = np.random.default_rng([seed, 41, index])
            transforms = hand_held_transforms(len(rgb), rgb[0].shape[:2], rng, cfg["max_scale"],
                                              cfg["max_shift_px"], cfg["max_rotation_deg"])
            target = tmp / scene.name
            target.mkdir()
            for k, pixels, matrix in zip(meta["focus_order"], rgb, transforms, strict=True):
                height, width = pixels.shape[:2]
                warped = cv2.warpAffine(pixels, matrix[:2], (width, height), borderMode=cv2.BORDER_REFLECT,
                                        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
                Image.fromarray(warped).save(target / layout.focus_file(k))
            for name in (layout.GT_FILE, layout.INDEX_FILE):
                shutil.copyfile(scene / name, target / name)
            meta = dict(meta, handheld={"transforms": [np.round(m, 8).tolist() for m in transforms], **cfg})
            atomic.write_json(target / layout.SCENE_FILE, meta)
        atomic.write_json(tmp / "manifest.json", {"scenes": [s.name for s in scenes], "params": cfg,
                                                  "seed": seed})
    return out_dir / "manifest.json"


def defocus_radius_px(camera: dict, depth_m: float, focus_m: float, pixels_across: int) -> float:
    """Radius (px) of the thin-lens blur disc of a point at `depth_m` when a scene's camera
    (`camera` of scene.json) is focused at `focus_m`: circle of confusion aperture * f * |d - s|
    / (d (s - f)) on the sensor, in pixels of an image `pixels_across` px wide over its width."""
    focal = camera["focal_length_mm"] / 1000.0
    diameter = camera["aperture_m"] * focal * abs(depth_m - focus_m) / (depth_m * (focus_m - focal))
    return diameter / 2.0 / (camera["sensor_width_mm"] / 1000.0) * pixels_across


def corner_error(estimated: np.ndarray, truth: np.ndarray, height: int, width: int) -> float:
    """RMS distance (px) between where two 3x3 transforms take the corners and the centre."""
    points = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1],
                       [width / 2, height / 2, 1]], dtype=np.float64)
    a, b = points @ estimated.T, points @ truth.T
    return float(np.sqrt((((a[:, :2] / a[:, 2:]) - (b[:, :2] / b[:, 2:])) ** 2).sum(1).mean()))


def _number(row: dict, key: str) -> float:
    return float(row[key]) if row[key] != "" else float("nan")


def observability_summary(frames: list[dict], scenes: list[dict]) -> dict:
    """`scripts/handheld_observability.py`: its per-frame and per-scene rows (strings from its
    CSVs, or numbers) summed up, the figures the README quotes. Frames "holding focus": at least 2 %
    of their pixels on the plane they are focused on (the reference excluded)."""
    num = _number
    references = [f for f in frames if int(f["is_reference"])]
    sharp = [f for f in frames if num(f, "in_focus_fraction") >= 0.02 and not int(f["is_reference"])]
    oracle = np.array([num(f, "oracle_error_px") for f in sharp])
    found = np.array([num(f, "estimator_error_px") for f in sharp])
    auto = np.array([num(s, "gff_registered_auto") - num(s, "gff_registered") for s in scenes])
    return {
        "scenes": len(scenes),
        "reference_without_focus": sum(num(f, "in_focus_fraction") == 0 for f in references),
        "frames_holding_focus": len(sharp),
        "motion_px_median": round(float(np.median([num(f, "motion_px") for f in sharp])), 2),
        "estimator_error_px_median": round(float(np.nanmedian(found)), 2),
        "oracle_error_px_median": round(float(np.median(oracle)), 2),
        "oracle_under_half_px": round(float(np.mean(oracle < 0.5)), 2),
        "oracle_registered_px_median": round(float(np.median(
            [num(f, "oracle_registered_px") for f in sharp])), 2),
        "gff_registered": round(float(np.mean([num(s, "gff_registered") for s in scenes])), 2),
        "gff_true_transforms": round(float(np.mean([num(s, "gff_true_transforms") for s in scenes])), 2),
        "gff_unaligned": round(float(np.mean([num(s, "gff_unaligned") for s in scenes])), 2),
        "auto_leaves_registered": sum(int(s["auto_leaves_registered"]) for s in scenes),
        "auto_change_db_mean": round(float(np.mean(auto)), 3),
        "auto_change_db_worst": round(float(auto.min()), 3),
    }


def photo_stacks_summary(rows: list[dict]) -> list[str]:
    """`scripts/handheld_photo_stacks.py`: its rows (strings from its CSV, or numbers) as a
    markdown table, one line per method: mean PSNR per condition, the change `--align auto`
    makes on registered stacks, the hand-held loss after alignment (mean and worst stack), the
    alignment's corner error and its time beside the fusion's."""
    header = ["method", "stacks", "registered", "auto on registered, largest change",
              "hand-held, unaligned", "hand-held, true transforms", "hand-held, aligned",
              "aligned - registered (worst stack)",
              "corner error px, median (max)", "alignment / fusion s, median (ratio)"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        keys = ("registered", "registered_auto", "unaligned", "true_transforms", "aligned", "corner_error_px",
                "align_s", "fuse_s")
        values = {key: np.array([float(r[key]) for r in mine]) for key in keys}
        loss = values["aligned"] - values["registered"]
        lines.append(
            f"| {method} | {len(mine)} | {values['registered'].mean():.2f} | "
            f"{np.abs(values['registered_auto'] - values['registered']).max():.3f} dB | "
            f"{values['unaligned'].mean():.2f} | {values['true_transforms'].mean():.2f} | "
            f"{values['aligned'].mean():.2f} | "
            f"{loss.mean():+.2f} ({loss.min():+.2f}) | {np.median(values['corner_error_px']):.3f} "
            f"({values['corner_error_px'].max():.3f}) | {np.median(values['align_s']):.2f} / "
            f"{np.median(values['fuse_s']):.2f} ({np.median(values['align_s'] / values['fuse_s']):.0%}) |")
    return lines
