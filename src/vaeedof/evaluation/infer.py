"""`vaeedof infer`: fuse every rendered test scene with the model (both output modes) and the
baselines, plus the VAE ceiling (the GT through the frozen VAE: the best the latent mode can
reach), into `<out>/<method>/<scene_id>.png` and a manifest written last."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .. import atomic
from ..errors import VaeedofError
from ..fusion.align import align_stack
from ..images import save_image
from ..logs import get_logger, progress
from ..render import layout
from .baselines import fusion_methods

CEILING = "vae_ceiling"


def test_scenes(data_dir: str | os.PathLike) -> list[Path]:
    dirs = layout.rendered_scenes(data_dir)
    if not dirs:
        raise VaeedofError(f"{data_dir}: no rendered test scenes")
    return dirs


def read_manifest(fused_dir: str | os.PathLike) -> dict:
    """What `infer` wrote: its methods and scenes."""
    return atomic.read_json(Path(fused_dir) / "manifest.json", "run `vaeedof infer` first")


def infer(data_dir: str | os.PathLike, out_dir: str | os.PathLike, fuser, align: str = "off") -> dict:
    """Write out_dir/<method>/<scene_id>.png for every method and test scene, atomically. With
    `align` (auto, on) each stack is aligned first, for every method alike."""
    out_dir = Path(out_dir)
    methods = fusion_methods(fuser)
    if "enfuse" not in methods:
        get_logger().warning("enfuse not installed: the enfuse baseline is skipped")
    scenes = test_scenes(data_dir)
    unaligned = []
    with atomic.atomic_directory(out_dir) as tmp:
        for scene_dir in progress(scenes, desc="infer"):
            inputs, gt = layout.load_tensors(scene_dir)
            try:
                names = [f"{scene_dir.name}/{k}" for k in range(len(inputs))]
                inputs, _ = align_stack(inputs, names, align, strict=True)
            except VaeedofError as exc:  # counted and reported: the evaluation goes on unaligned
                get_logger().warning("%s", exc)
                unaligned.append(scene_dir.name)
            with torch.no_grad():
                results = {name: fn(inputs) for name, fn in methods.items()}
                results[CEILING] = fuser.vae.reconstruct(gt[None].to(fuser.device))[0].cpu()
            for name, image in results.items():
                save_image(image, tmp / name / f"{scene_dir.name}.png")
        atomic.write_json(tmp / "manifest.json", {
            "methods": sorted(methods) + [CEILING], "scenes": [d.name for d in scenes], "align": align,
            "alignment_failed": unaligned})
    get_logger().info("fused %d test scenes with %s", len(scenes), ", ".join(sorted(methods)))
    return read_manifest(out_dir)
