"""Figures of the evaluation: the per-patch difficulty analysis (the paper's Figure 4), fusion
throughput versus the number of inputs (Figure 6), and contact sheets of the methods."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import atomic
from .baselines import fusion_methods
from .contact_sheet import labelled_row, save_rows
from .errors import VaeedofError
from .evaluate import load_inputs
from .images import read_image


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else min(99.0, -10 * np.log10(mse))


def difficulty_table(data_dir: str | os.PathLike, fused_dir: str | os.PathLike, patch: int = 32,
                     bins: int = 6) -> list[dict]:
    """Each test image is cut into patch x patch tiles; a tile's difficulty is how far the best
    input tile is from the GT tile (100 - its PSNR, so harder = larger). Per difficulty bin and
    method: the mean PSNR of the method's tiles and the tile count."""
    fused_dir = Path(fused_dir)
    manifest = json.loads((fused_dir / "manifest.json").read_text())
    records = []  # (difficulty, method, psnr)
    for scene in manifest["scenes"]:
        inputs, gt = load_inputs(Path(data_dir) / scene)
        stack = torch.stack(inputs).numpy()
        gt = gt.numpy()
        results = {m: read_image(fused_dir / m / f"{scene}.png").numpy() for m in manifest["methods"]}
        height, width = gt.shape[1:]
        for y in range(0, height - patch + 1, patch):
            for x in range(0, width - patch + 1, patch):
                window = (slice(None), slice(y, y + patch), slice(x, x + patch))
                target = gt[window]
                best = max(_psnr(image[window], target) for image in stack)
                for method, image in results.items():
                    records.append((100.0 - best, method, _psnr(image[window], target)))
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


def throughput_table(fuser, size: int = 512, counts=range(2, 8), repeats: int = 1) -> list[dict]:
    """Fused size x size images per second versus the number of inputs, model and baselines."""
    methods = fusion_methods(fuser)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for count in counts:
        stack = [torch.rand(3, size, size, generator=generator) for _ in range(count)]
        for method, fn in methods.items():
            with torch.no_grad():
                fn(stack)  # warm-up
                start = time.perf_counter()
                for _ in range(repeats):
                    fn(stack)
            seconds = (time.perf_counter() - start) / repeats
            rows.append({"inputs": count, "method": method, "images_per_s": round(1.0 / seconds, 4),
                         "device": str(fuser.device)})
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, buffer.getvalue())


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
    manifest = json.loads((fused_dir / "manifest.json").read_text())
    rows = []
    for scene in manifest["scenes"][:scenes]:
        inputs, gt = load_inputs(Path(data_dir) / scene)
        images = [(f"input {k}", im) for k, im in enumerate(inputs)]
        images += [(m, read_image(fused_dir / m / f"{scene}.png")) for m in manifest["methods"]]
        images.append(("GT", gt))
        rows.append(labelled_row([(label, _pil(image)) for label, image in images], tile, tile))
    save_rows(rows, path)


def _pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))


def find_stacks(folders: list[str], limit: int) -> list[list[Path]]:
    """Stacks (lists of image files) in the given folders: a folder of images is one stack, a
    folder of such folders holds several; at most `limit`, in name order."""
    from .images import READ_SUFFIXES

    def images_in(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in READ_SUFFIXES)

    stacks = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise VaeedofError(f"{folder}: real stack folder not found (evaluate.real_stacks)")
        direct = images_in(folder)
        candidates = [direct] if len(direct) >= 2 else [images_in(sub) for sub in sorted(folder.iterdir())
                                                        if sub.is_dir()]
        stacks += [c for c in candidates if len(c) >= 2]
    return stacks[:limit]


def real_stacks_sheet(stacks: list[list[Path]], fuser, path: Path, tile: int = 160,
                      shown_inputs: int = 3) -> None:
    """Rows: a few inputs | the model and the baselines, for real focus stacks (no GT)."""
    methods = fusion_methods(fuser)
    rows = []
    for stack in stacks:
        images = [read_image(p) for p in stack]
        if len({tuple(im.shape) for im in images}) > 1:
            raise VaeedofError(f"{stack[0].parent}: stack images differ in size")
        with torch.no_grad():
            results = [(name, fn(images)) for name, fn in methods.items()]
        picks = np.linspace(0, len(images) - 1, min(shown_inputs, len(images))).round().astype(int)
        shown = [(stack[i].name, images[i]) for i in picks] + results
        height = round(tile * images[0].shape[1] / images[0].shape[2])
        labelled = [(f"{stack[0].parent.name}: {label}"[:26], _pil(image)) for label, image in shown]
        rows.append(labelled_row(labelled, tile, height))
    if not rows:
        raise VaeedofError("no real stacks found")
    save_rows(rows, path)
