"""Measures shared by the hand-held studies: the thin-lens blur radius, the corner error of a
transform, and the two figures' tables (`handheld-observability`, `handheld-photos`)."""

from __future__ import annotations

import numpy as np


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
    """`observability.py`: its per-frame and per-scene rows (strings from its
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


def photo_stacks_table(rows: list[dict]) -> str:
    """The `handheld-photos` figure from `photo_stacks.py`'s rows (strings from its CSV, or numbers) as a
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
    return "\n".join(lines) + "\n"


def observability_table(frames: list[dict], scenes: list[dict]) -> str:
    """The `handheld-observability` figure: per split, how often the reference frame holds
    nothing in focus, and how well the motion of the frames that do can be estimated."""
    header = ["split", "scenes", "registered left untouched by auto",
              "auto on registered, GFF dB: mean (worst)", "reference frame with nothing in focus",
              "frames in focus on a visible plane", "their motion, median px",
              "error of `estimate`, median px", "oracle error, median px", "oracle under 0.5 px",
              "oracle on the registered copy, median px", "GFF registered", "GFF, true transforms",
              "GFF, unaligned"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for split in sorted({r["split"] for r in frames}):
        s = observability_summary([r for r in frames if r["split"] == split],
                                  [r for r in scenes if r["split"] == split])
        cells = [split, s["scenes"], s["auto_leaves_registered"],
                 f"{s['auto_change_db_mean']:+.3f} ({s['auto_change_db_worst']:+.3f})",
                 s["reference_without_focus"],
                 s["frames_holding_focus"],
                 *(f"{s[k]:.2f}" for k in ("motion_px_median", "estimator_error_px_median",
                                           "oracle_error_px_median")),
                 f"{s['oracle_under_half_px']:.0%}",
                 *(f"{s[k]:.2f}" for k in ("oracle_registered_px_median", "gff_registered",
                                           "gff_true_transforms", "gff_unaligned"))]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
