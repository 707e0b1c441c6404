"""`vaeedof evaluate`: the whole evaluation report from the fused test scenes: Table 1 scores,
the difficulty analysis, the methods' contact sheet, and an MLflow run."""

from __future__ import annotations

import os
from pathlib import Path

from ..tracking import check_store, log_evaluation
from . import figures
from .scores import checkpoint_info, score


def run(params: dict, data_dir: str | os.PathLike, fused_dir: str | os.PathLike,
        reports_dir: str | os.PathLike, checkpoint: str | os.PathLike, track: bool = True,
        variant: str = "registered") -> dict:
    """Write every report of the evaluation under reports_dir; return the score summary.
    `variant`: which test stacks (registered, or handheld: `vaeedof handheld`), tagged in MLflow."""
    cfg, reports = params["evaluate"], Path(reports_dir)
    if track:
        check_store()  # before any work: a store that cannot be written stops here
    summary = score(data_dir, fused_dir, reports, checkpoint_info(checkpoint), variant)
    figures.write_difficulty(data_dir, fused_dir, reports, cfg["difficulty_patch"], cfg["difficulty_bins"])
    figures.methods_sheet(data_dir, fused_dir, reports / "contact_sheet_methods.png",
                          cfg["contact_sheet_scenes"])
    if track:
        log_evaluation(summary, params, reports)
    return summary
