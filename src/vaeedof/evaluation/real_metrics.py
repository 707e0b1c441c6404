"""`vaeedof real-metrics`: the no-reference scores (Q^AB/F, Q_Y, NMI) of the model and every
baseline on real focus stacks without ground truth (e.g. Lytro, MFFW): reports/real_metrics.csv
(one row per stack and method, then each collection's mean per method, each with a status: a
method that failed or could not run is listed with why, without scores) and an MLflow run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import atomic
from ..errors import VaeedofError
from ..logs import get_logger, progress
from ..tracking import check_store, log_evaluation
from .baselines import OK, failed_status, fuse_each, fusion_methods, not_run_status, unavailable_methods
from .nr_metrics import METRICS, no_reference_scores
from .real import load_real_stack
from .scores import checkpoint_info

MEAN_ROW = "mean"


def _collection(paths: list[Path]) -> str:
    # A stack folder's parent names its collection (Lytro/lytro-01 -> Lytro).
    return paths[0].parent.parent.name


def score_stacks(stacks: list[tuple[str, list[Path]]], fuser, evaluate: dict | None = None) -> list[dict]:
    """One row per (stack, method): the stack's collection, size, inputs, the three scores and a
    status: `ok`, `failed: why` (no scores), or `not run: why` for a method that cannot run here."""
    methods = fusion_methods(fuser, evaluate)
    unavailable = unavailable_methods(evaluate)
    rows = []
    for name, paths in progress(stacks, desc="real stacks"):
        images = load_real_stack(paths)
        base = {"collection": _collection(paths), "stack": name, "inputs": len(images)}
        with torch.no_grad():
            fused, failed = fuse_each(methods, images, name)
        for method in methods:
            if method in fused:
                scores = no_reference_scores(images, fused[method].float().clamp(0, 1))
                rows.append({**base, "method": method, **{k: round(v, 5) for k, v in scores.items()},
                             "status": OK})
            else:
                rows.append({**base, "method": method, **dict.fromkeys(METRICS),
                             "status": failed_status(failed[method])})
        rows += [{**base, "method": method, **dict.fromkeys(METRICS), "status": not_run_status(reason)}
                 for method, reason in unavailable.items()]
    return rows


def collection_means(rows: list[dict]) -> list[dict]:
    """Per collection and method, the mean of each score over the stacks it fused (`inputs`: how
    many); its status says on how many it failed, or why it did not run."""
    means = []
    for collection in sorted({row["collection"] for row in rows}):
        for method in dict.fromkeys(row["method"] for row in rows):
            picked = [r for r in rows if r["collection"] == collection and r["method"] == method]
            fused = [r for r in picked if r["status"] == OK]
            status = OK if len(fused) == len(picked) else picked[0]["status"] if not fused else \
                f"failed on {len(picked) - len(fused)} of {len(picked)} stacks"
            scores = {k: round(float(np.mean([r[k] for r in fused])), 5) if fused else None for k in METRICS}
            means.append({"collection": collection, "stack": MEAN_ROW, "method": method,
                          "inputs": len(fused), **scores, "status": status})
    return means


def run(stacks: list[tuple[str, list[Path]]], fuser, reports_dir: str | Path, checkpoint: str | Path,
        params: dict, track: bool = True) -> Path:
    """Score, write reports/real_metrics.csv, log the collection means to MLflow."""
    if not stacks:
        raise VaeedofError("no real stacks: name stack folders, or set evaluate.real_stacks")
    reports = Path(reports_dir)
    if track:
        check_store()
    rows = score_stacks(stacks, fuser, params.get("evaluate"))
    means = collection_means(rows)
    path = reports / "real_metrics.csv"
    atomic.write_csv(path, rows + means)
    for row in [row for row in means if row["status"] != OK]:
        get_logger().warning("%s %s: %s", row["collection"], row["method"], row["status"])
    means = [row for row in means if row["qabf"] is not None]  # the CSV keeps the others, with why
    for row in means:
        get_logger().info("%s %-16s Q^AB/F %.4f  Q_Y %.4f  NMI %.4f", row["collection"], row["method"],
                          row["qabf"], row["qy"], row["nmi"])
    if track:
        summary = {"variant": "real", "checkpoint": checkpoint_info(checkpoint), "methods": {}}
        for row in means:
            summary["methods"].setdefault(row["method"], {}).update(
                {f"{row['collection']}.{k}": row[k] for k in METRICS})
        log_evaluation(summary, params, reports, artifacts=(path.name,))
    return path
