"""`vaeedof real-metrics`: the no-reference scores (Q^AB/F, Q_Y, NMI) of the model and every
baseline on real focus stacks without ground truth (e.g. Lytro, MFFW): reports/real_metrics.csv
(one row per stack and method, then each collection's mean per method) and an MLflow run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import atomic
from ..errors import VaeedofError
from ..logs import get_logger, progress
from ..tracking import check_store, log_evaluation
from .baselines import fusion_methods
from .nr_metrics import METRICS, no_reference_scores
from .real import load_real_stack
from .scores import checkpoint_info

MEAN_ROW = "mean"


def _collection(paths: list[Path]) -> str:
    # A stack folder's parent names its collection (Lytro/lytro-01 -> Lytro).
    return paths[0].parent.parent.name


def score_stacks(stacks: list[tuple[str, list[Path]]], fuser) -> list[dict]:
    """One row per (stack, method): the stack's collection, size, inputs and the three scores."""
    methods = fusion_methods(fuser)
    rows = []
    for name, paths in progress(stacks, desc="real stacks"):
        images = load_real_stack(paths)
        with torch.no_grad():
            for method, fuse in methods.items():
                scores = no_reference_scores(images, fuse(images).float().clamp(0, 1))
                rows.append({"collection": _collection(paths), "stack": name, "method": method,
                             "inputs": len(images), **{k: round(v, 5) for k, v in scores.items()}})
    return rows


def collection_means(rows: list[dict]) -> list[dict]:
    """Per collection and method, the mean of each score over its stacks."""
    means = []
    for collection in sorted({row["collection"] for row in rows}):
        for method in dict.fromkeys(row["method"] for row in rows):
            picked = [r for r in rows if r["collection"] == collection and r["method"] == method]
            if picked:
                means.append({"collection": collection, "stack": MEAN_ROW, "method": method,
                              "inputs": len(picked),
                              **{k: round(float(np.mean([r[k] for r in picked])), 5) for k in METRICS}})
    return means


def run(stacks: list[tuple[str, list[Path]]], fuser, reports_dir: str | Path, checkpoint: str | Path,
        params: dict, track: bool = True) -> Path:
    """Score, write reports/real_metrics.csv, log the collection means to MLflow."""
    if not stacks:
        raise VaeedofError("no real stacks: name stack folders, or set evaluate.real_stacks")
    reports = Path(reports_dir)
    if track:
        check_store()
    rows = score_stacks(stacks, fuser)
    means = collection_means(rows)
    path = reports / "real_metrics.csv"
    atomic.write_csv(path, rows + means)
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
