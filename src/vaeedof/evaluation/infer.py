"""`vaeedof infer`: fuse every rendered test scene with the model (both output modes) and the
baselines, plus two references for the latent mode, into `<out>/<method>/<scene_id>.png` and a
manifest written last:
- the VAE ceiling: the GT through the frozen VAE, the best any latent can give;
- the latent selection oracle: at every latent position the input latent nearest (L1) to the
  GT's, decoded: hard selection with knowledge of the answer. Where it stays far below the
  ceiling, the latent mode must synthesise what no input latent holds (the encoder sees the blur
  of other planes around every in-focus region), not merely select."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .. import atomic
from ..errors import VaeedofError
from ..fusion.align import align_stack
from ..images import as_float, save_image
from ..logs import get_logger, progress
from ..render import layout
from .baselines import CEILING, LATENT_ORACLE, fuse_each, fusion_methods, unavailable_methods
from .external import peer_versions

STAGE = "infer"  # the owner of the fused folder (atomic.OWNER_FILE)


def latent_selection_oracle(vae, inputs: list[torch.Tensor], gt: torch.Tensor) -> torch.Tensor:
    """(3, H, W) float images -> the decoded per-position best selection of the inputs' latents."""
    latents = torch.stack([vae.encode(image[None])[0] for image in inputs])  # (n, C, h, w)
    target = vae.encode(gt[None])[0]
    nearest = (latents - target).abs().mean(dim=1).argmin(dim=0)  # (h, w)
    chosen = latents.gather(0, nearest[None, None].expand(1, *latents.shape[1:]))
    return vae.decode(chosen, gt.shape[-2:])[0]


def test_scenes(data_dir: str | os.PathLike) -> list[Path]:
    dirs = layout.rendered_scenes(data_dir)
    if not dirs:
        raise VaeedofError(f"{data_dir}: no rendered test scenes")
    return dirs


def read_manifest(fused_dir: str | os.PathLike) -> dict:
    """What `infer` wrote: its methods and scenes."""
    return atomic.read_json(Path(fused_dir) / "manifest.json", "run `vaeedof infer` first")


def infer(data_dir: str | os.PathLike, out_dir: str | os.PathLike, fuser, align: str = "off",
          evaluate: dict | None = None) -> dict:
    """Write out_dir/<method>/<scene_id>.png for every method and test scene, atomically. With
    `align` (auto, on) each stack is aligned first, for every method alike. `evaluate`: the params
    naming peers and external commands. The manifest names the methods that could not run here
    and, per method, the scenes it failed on (no image written for those)."""
    out_dir = Path(out_dir)
    methods = fusion_methods(fuser, evaluate)
    unavailable = unavailable_methods(evaluate)
    for name, reason in unavailable.items():
        get_logger().warning("method %s not run: %s", name, reason)
    scenes = test_scenes(data_dir)
    unaligned, failed = [], {}
    with atomic.atomic_directory(out_dir, STAGE, [data_dir]) as tmp:
        for scene_dir in progress(scenes, desc="infer"):
            inputs, gt = layout.load_tensors(scene_dir)
            try:
                names = [f"{scene_dir.name}/{k}" for k in range(len(inputs))]
                inputs, _ = align_stack(inputs, names, align, strict=True)
            except VaeedofError as exc:  # counted and reported: the evaluation goes on unaligned
                get_logger().warning("%s", exc)
                unaligned.append(scene_dir.name)
            with torch.no_grad():
                results, failures = fuse_each(methods, inputs, scene_dir.name)
                results[CEILING] = fuser.vae.reconstruct(gt[None].to(fuser.device))[0].cpu()
                floats = [as_float(image).to(fuser.device) for image in inputs]
                results[LATENT_ORACLE] = latent_selection_oracle(
                    fuser.vae, floats, as_float(gt).to(fuser.device)).cpu()
            for name, reason in failures.items():
                failed.setdefault(name, {})[scene_dir.name] = reason
            for name, image in results.items():
                save_image(image, tmp / name / f"{scene_dir.name}.png")
        atomic.write_json(tmp / "manifest.json", {
            "methods": list(methods) + [CEILING, LATENT_ORACLE], "scenes": [d.name for d in scenes],
            "align": align, "alignment_failed": unaligned, "failed": failed, "unavailable": unavailable,
            "peers": peer_versions()})
    get_logger().info("fused %d test scenes with %s", len(scenes), ", ".join(methods))
    return read_manifest(out_dir)


def fused_path(fused_dir: str | os.PathLike, manifest: dict, method: str, scene: str) -> Path | None:
    """The image `method` made of `scene`, or None where it failed on that scene."""
    if scene in manifest.get("failed", {}).get(method, {}):
        return None
    return Path(fused_dir) / method / f"{scene}.png"
