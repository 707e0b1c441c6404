"""Scores of the fused test scenes against the ground truth: per image, per method (means over
scenes, the paper's convention), and Table 1 as Markdown with the best value in bold."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import atomic
from ..hashing import sha256_file
from ..images import read_image
from ..logs import progress
from ..provenance import data_version, git_commit
from ..render import layout
from .infer import fused_path, read_manifest
from .metrics import METRICS, MetricSuite, higher_is_better


def score(data_dir: str | os.PathLike, fused_dir: str | os.PathLike, reports_dir: str | os.PathLike,
          checkpoint_info: dict | None = None, variant: str = "registered") -> dict:
    """reports/metrics.json (per method means; unavailable metrics with reasons),
    reports/per_image.csv and reports/table.md (Table 1 layout, best marked)."""
    fused_dir, reports_dir = Path(fused_dir), Path(reports_dir)
    manifest = read_manifest(fused_dir)
    suite = MetricSuite()
    rows = []
    side = None
    for scene in progress(manifest["scenes"], desc="evaluate"):
        gt = read_image(Path(data_dir) / scene / layout.GT_FILE)
        side = min(gt.shape[-2:]) if side is None else min(side, *gt.shape[-2:])
        for method in manifest["methods"]:
            path = fused_path(fused_dir, manifest, method, scene)
            if path:  # where a method failed, its failure is in the summary and the table
                rows.append({"scene": scene, "method": method, **suite(read_image(path), gt)})
    unavailable = dict(suite.unavailable, **suite.size_reasons(side or 0))
    summary: dict = {"methods": {}, "unavailable": unavailable, "scenes": len(manifest["scenes"]),
                     "variant": variant, "align": manifest.get("align", "off"),
                     "alignment_failed": manifest.get("alignment_failed", []),
                     "failed_methods": manifest.get("failed", {}),
                     "unavailable_methods": manifest.get("unavailable", {}),
                     "peers": manifest.get("peers", {})}
    for method in manifest["methods"]:
        values = [r for r in rows if r["method"] == method]
        summary["methods"][method] = {
            name: float(np.mean([r[name] for r in values])) for name in METRICS
            if values and all(r[name] is not None for r in values)}
    if checkpoint_info:
        summary["checkpoint"] = checkpoint_info
    summary["git_commit"] = git_commit()
    summary["data_version"] = data_version(data_dir)
    atomic.write_json(reports_dir / "metrics.json", summary)
    atomic.write_csv(reports_dir / "per_image.csv", rows, ["scene", "method", *METRICS])
    atomic.write_text(reports_dir / "table.md", table_markdown(summary))
    return summary


def table_markdown(summary: dict) -> str:
    """Methods x metrics; the best value of each metric in bold (ties too), among the methods
    that fused every scene; arrows give the better direction. Unavailable metrics are listed with
    their reasons; a method that failed on some scenes is marked (its means are over the others)
    and one that could not run here is a row of `not run`, with the reasons below."""
    methods, failed = summary["methods"], summary.get("failed_methods", {})
    names = [n for n in METRICS if n not in summary["unavailable"]]
    lines = ["| method | " + " | ".join(f"{n} {'↑' if higher_is_better(n) else '↓'}" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    best = {}
    for name in names:
        values = [m[name] for method, m in methods.items() if name in m and method not in failed]
        if values:
            best[name] = max(values) if higher_is_better(name) else min(values)
    for method, scores in methods.items():
        cells = []
        for name in names:
            if name not in scores:
                cells.append("failed" if method in failed else "n/a")
                continue
            text = f"{scores[name]:.4f}" if abs(scores[name]) < 10 else f"{scores[name]:.2f}"
            cells.append(f"**{text}**" if name in best and np.isclose(scores[name], best[name]) else text)
        lines.append(f"| {method}{' †' if method in failed else ''} | " + " | ".join(cells) + " |")
    for method in summary.get("unavailable_methods", {}):
        lines.append(f"| {method} | " + " | ".join("not run" for _ in names) + " |")
    lines.append("")
    lines.append(f"{summary['scenes']} test scenes. `vae_ceiling` is the ground truth through the "
                 "frozen VAE: the best fusion through it can reach; `latent_selection_oracle` per latent "
                 "position the input latent nearest the ground truth's, decoded.")
    for method, scenes in failed.items():
        scene, reason = next(iter(scenes.items()))
        lines.append(f"- {method} †: failed on {len(scenes)} of {summary['scenes']} scenes (first: {scene}, "
                     f"{reason}); its means are over the others and it is not ranked")
    for method, reason in summary.get("unavailable_methods", {}).items():
        lines.append(f"- {method}: not run, {reason}")
    for name, reason in summary["unavailable"].items():
        lines.append(f"- {name}: unavailable, {reason}")
    return "\n".join(lines) + "\n"


def checkpoint_info(weights: str | os.PathLike) -> dict:
    weights = Path(weights)
    info = json.loads(weights.with_suffix(".json").read_text())
    return {"weights": str(weights), "sha256": sha256_file(weights),
            "mlflow_run_id": info.get("mlflow_run_id"), "vae": info.get("vae")}
