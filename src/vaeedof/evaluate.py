"""Evaluation on the rendered test split: fuse every test scene with the model and the
baselines (`infer`), then score every result against the ground truth (`evaluate`).

Methods: `vaeedof` (the EMA model), `vae_ceiling` (the GT through the frozen VAE: the best the
method can reach), `mean` (of the inputs), `laplacian` (pyramid max-contrast) and `enfuse`
(when installed)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import torch

from . import atomic
from .baselines import fusion_methods
from .dataset import rendered_scenes
from .errors import VaeedofError
from .hashing import sha256_file
from .images import read_image, save_image
from .logs import get_logger, progress
from .metrics import METRICS, MetricSuite, higher_is_better
from .provenance import data_version, git_commit


def test_scenes(data_dir: str | os.PathLike) -> list[Path]:
    dirs = rendered_scenes(data_dir)
    if not dirs:
        raise VaeedofError(f"{data_dir}: no rendered test scenes")
    return dirs


def load_inputs(scene_dir: Path) -> tuple[list[torch.Tensor], torch.Tensor]:
    meta = json.loads((scene_dir / "scene.json").read_text())
    inputs = [read_image(scene_dir / f"focus_{k}.png") for k in meta["focus_order"]]
    return inputs, read_image(scene_dir / "gt.png")


def infer(data_dir: str | os.PathLike, out_dir: str | os.PathLike, fuser) -> dict:
    """Write out_dir/<method>/<scene_id>.png for every method and test scene, atomically."""
    out_dir = Path(out_dir)
    methods = fusion_methods(fuser)
    if "enfuse" not in methods:
        get_logger().warning("enfuse not installed: the enfuse baseline is skipped")
    scenes = test_scenes(data_dir)
    with atomic.atomic_directory(out_dir) as tmp:
        for scene_dir in progress(scenes, desc="infer"):
            inputs, gt = load_inputs(scene_dir)
            with torch.no_grad():
                results = {name: fn(inputs) for name, fn in methods.items()}
                results["vae_ceiling"] = fuser.vae.reconstruct(gt[None].to(fuser.device))[0].cpu()
            for name, image in results.items():
                save_image(image, tmp / name / f"{scene_dir.name}.png")
        atomic.write_json(tmp / "manifest.json", {
            "methods": sorted(methods) + ["vae_ceiling"], "scenes": [d.name for d in scenes]})
    get_logger().info("fused %d test scenes with %s", len(scenes), ", ".join(sorted(methods)))
    return json.loads((out_dir / "manifest.json").read_text())


def evaluate(data_dir: str | os.PathLike, fused_dir: str | os.PathLike, reports_dir: str | os.PathLike,
             checkpoint_info: dict | None = None) -> dict:
    """reports/metrics.json (per method means; unavailable metrics with reasons),
    reports/per_image.csv and reports/table.md (Table 1 layout, best marked)."""
    fused_dir, reports_dir = Path(fused_dir), Path(reports_dir)
    manifest = json.loads((fused_dir / "manifest.json").read_text())
    suite = MetricSuite()
    rows = []
    side = None
    for scene in progress(manifest["scenes"], desc="evaluate"):
        gt = read_image(Path(data_dir) / scene / "gt.png")
        side = min(gt.shape[-2:]) if side is None else min(side, *gt.shape[-2:])
        for method in manifest["methods"]:
            scores = suite(read_image(fused_dir / method / f"{scene}.png"), gt)
            rows.append({"scene": scene, "method": method, **scores})
    unavailable = dict(suite.unavailable, **suite.size_reasons(side or 0))
    summary: dict = {"methods": {}, "unavailable": unavailable, "scenes": len(manifest["scenes"])}
    for method in manifest["methods"]:
        values = [r for r in rows if r["method"] == method]
        summary["methods"][method] = {
            name: float(np.mean([r[name] for r in values])) for name in METRICS
            if all(r[name] is not None for r in values)}
    if checkpoint_info:
        summary["checkpoint"] = checkpoint_info
    summary["git_commit"] = git_commit()
    summary["data_version"] = data_version(data_dir)
    atomic.write_json(reports_dir / "metrics.json", summary)
    _write_csv(rows, reports_dir / "per_image.csv")
    atomic.write_text(reports_dir / "table.md", table_markdown(summary))
    return summary


def _write_csv(rows: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["scene", "method", *METRICS])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    atomic.write_text(path, buffer.getvalue())


def table_markdown(summary: dict) -> str:
    """Methods x metrics; the best value of each metric in bold (ties too); arrows give the
    better direction; unavailable metrics are listed with their reasons."""
    methods = summary["methods"]
    names = [n for n in METRICS if n not in summary["unavailable"]]
    lines = ["| method | " + " | ".join(f"{n} {'↑' if higher_is_better(n) else '↓'}" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    best = {}
    for name in names:
        values = [m[name] for m in methods.values() if name in m]
        if values:
            best[name] = max(values) if higher_is_better(name) else min(values)
    for method, scores in methods.items():
        cells = []
        for name in names:
            if name not in scores:
                cells.append("n/a")
                continue
            text = f"{scores[name]:.4f}" if abs(scores[name]) < 10 else f"{scores[name]:.2f}"
            cells.append(f"**{text}**" if np.isclose(scores[name], best[name]) else text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"{summary['scenes']} test scenes. `vae_ceiling` is the ground truth through the "
                 "frozen VAE: the best fusion through it can reach.")
    for name, reason in summary["unavailable"].items():
        lines.append(f"- {name}: unavailable, {reason}")
    return "\n".join(lines) + "\n"


def checkpoint_info(weights: str | os.PathLike) -> dict:
    weights = Path(weights)
    info = json.loads(weights.with_suffix(".json").read_text())
    return {"weights": str(weights), "sha256": sha256_file(weights),
            "mlflow_run_id": info.get("mlflow_run_id"), "vae": info.get("vae")}
