"""Figures of the evaluation: the per-patch difficulty analysis (the paper's Figure 4), fusion
throughput versus the number of inputs (Figure 6), and the contact sheet of the methods."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .. import atomic
from ..images import psnr, read_image, to_pil
from ..render import layout
from ..render.contact_sheet import labelled_row, save_rows
from .infer import fused_path, read_manifest


def difficulty_table(data_dir: str | os.PathLike, fused_dir: str | os.PathLike, patch: int = 32,
                     bins: int = 6) -> list[dict]:
    """Each test image is cut into patch x patch tiles; a tile's difficulty is how far the best
    input tile is from the GT tile (100 - its PSNR, so harder = larger). Per difficulty bin and
    method: the mean PSNR of the method's tiles and the tile count."""
    fused_dir = Path(fused_dir)
    manifest = read_manifest(fused_dir)
    records = []  # (difficulty, method, psnr)
    for scene in manifest["scenes"]:
        inputs, gt = layout.load_tensors(Path(data_dir) / scene)
        stack = torch.stack(inputs).numpy()
        gt = gt.numpy()
        results = {m: read_image(path).numpy() for m in manifest["methods"]
                   if (path := fused_path(fused_dir, manifest, m, scene))}  # not where a method failed
        height, width = gt.shape[1:]
        for y in range(0, height - patch + 1, patch):
            for x in range(0, width - patch + 1, patch):
                window = (slice(None), slice(y, y + patch), slice(x, x + patch))
                target = gt[window]
                best = max(psnr(image[window], target) for image in stack)
                for method, image in results.items():
                    records.append((100.0 - best, method, psnr(image[window], target)))
    difficulties = np.array([r[0] for r in records])
    # Equal-count bins; ties can merge edges, leaving fewer (at least one) bins.
    edges = np.unique(np.quantile(difficulties, np.linspace(0, 1, bins + 1)))
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
    bins = len(edges) - 1
    rows = []
    for index in range(bins):
        low, high = edges[index], edges[index + 1]
        inside = [r for r in records if low <= r[0] <= high and (index == bins - 1 or r[0] < high)]
        for method in manifest["methods"]:
            values = [r[2] for r in inside if r[1] == method]
            if values:
                rows.append({"bin": index, "difficulty": round(float((low + high) / 2), 3),
                             "method": method, "psnr": round(float(np.mean(values)), 4),
                             "patches": len(values)})
    return rows


def plot(rows: list[dict], x: str, y: str, path: Path, title: str, size_key: str | None = None,
         log_y: bool = False, xlabel: str | None = None, ylabel: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    for method in sorted({r["method"] for r in rows}):
        points = [r for r in rows if r["method"] == method]
        axes.plot([p[x] for p in points], [p[y] for p in points], label=method, alpha=0.7)
        sizes = [10 + 200 * p[size_key] / max(r[size_key] for r in rows) for p in points] if size_key else 20
        axes.scatter([p[x] for p in points], [p[y] for p in points], s=sizes, alpha=0.7)
    if log_y:
        axes.set_yscale("log")
    axes.set_xlabel(xlabel or x)
    axes.set_ylabel(ylabel or y)
    axes.set_title(title)
    axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic.atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp)
    plt.close(figure)


def methods_sheet(data_dir: str | os.PathLike, fused_dir: str | os.PathLike, path: Path,
                  scenes: int = 4, tile: int = 128) -> None:
    """Rows: inputs | every method | GT, for the first test scenes."""
    fused_dir = Path(fused_dir)
    manifest = read_manifest(fused_dir)
    rows = []
    for scene in manifest["scenes"][:scenes]:
        inputs, gt = layout.load_tensors(Path(data_dir) / scene)
        images = [(f"input {k}", im) for k, im in enumerate(inputs)]
        for method in manifest["methods"]:
            fused = fused_path(fused_dir, manifest, method, scene)
            failed = (f"{method}: failed", torch.full_like(gt, 0.5))
            images.append((method, read_image(fused)) if fused else failed)
        images.append(("GT", gt))
        rows.append(labelled_row([(label, to_pil(image)) for label, image in images], tile, tile))
    save_rows(rows, path)


def write_difficulty(data_dir, fused_dir, reports: Path, patch: int, bins: int) -> None:
    """reports/difficulty.csv and .png (Figure 4)."""
    rows = difficulty_table(data_dir, fused_dir, patch, bins)
    atomic.write_csv(reports / "difficulty.csv", rows)
    plot(rows, "difficulty", "psnr", reports / "difficulty.png",
         "PSNR per difficulty bin (point size: patches)", size_key="patches",
         xlabel="difficulty: 100 - PSNR of the best input patch (dB)", ylabel="PSNR (dB)")
