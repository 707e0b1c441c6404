"""The latent cache: every patch (inputs and GT) encoded once by the frozen VAE into fp16 .npy
shards keyed by global sample index (shard k holds samples start..start+count-1, as the patch
shards). The manifest records the VAE and its checksums and the patches it came from; a change of
either rebuilds the cache. Shards are written atomically and encoding resumes where it stopped.
Augmentation happens at training time, never here."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from .. import atomic
from ..logs import get_logger, progress
from .patches import read_manifest

STAGE = "latents"  # the owner of the cache folder (atomic.OWNER_FILE)


def _identity(vae, patches_manifest: dict) -> dict:
    return {"vae": vae.spec.name, "vae_checksums": vae.checksums,
            "latent_channels": vae.latent_channels, "patches": patches_manifest["fingerprint"]}


@torch.no_grad()
def encode_stack(vae, pixels: np.ndarray, batch: int = 16) -> np.ndarray:
    """uint8 (N, K, S, S, 3) -> fp16 (N, K, C, S/8, S/8)."""
    n, k = pixels.shape[:2]
    flat = torch.from_numpy(np.array(pixels.reshape(n * k, *pixels.shape[2:])))
    device = next(vae.parameters()).device
    out = []
    for start in range(0, n * k, batch):
        images = flat[start:start + batch].to(device).permute(0, 3, 1, 2).float().div(255)
        with torch.no_grad():
            out.append(vae.encode(images).half().cpu().numpy())
    latents = np.concatenate(out)
    return latents.reshape(n, k, *latents.shape[1:])


def build(vae, patches_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Encode every patch shard not yet cached; return the cache manifest path."""
    log = get_logger()
    patches_dir, out_dir = Path(patches_dir), Path(out_dir)
    source = read_manifest(patches_dir)
    identity = _identity(vae, source)
    manifest_path = out_dir / "manifest.json"
    progress_path = out_dir / "progress.json"
    atomic.check_replaceable(out_dir, STAGE, [patches_dir])
    if out_dir.exists():
        previous = json.loads(progress_path.read_text()) if progress_path.exists() else {}
        if previous.get("identity") != identity and any(out_dir.iterdir()):
            log.info("%s: VAE or patches changed; rebuilding the latent cache", out_dir)
            shutil.rmtree(out_dir)  # ours: check_replaceable found the owner file
    done = json.loads(progress_path.read_text())["done"] if progress_path.exists() else []
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.mark_owner(out_dir, STAGE)
    shards = [shard for meta in source["splits"].values() for shard in meta["shards"]]
    for shard in progress(shards, desc="latents"):
        if shard["file"] in done and (out_dir / shard["file"]).exists():
            continue
        pixels = np.load(patches_dir / shard["file"], mmap_mode="r")
        latents = encode_stack(vae, pixels)
        target = out_dir / shard["file"]
        with atomic.atomic_path(target, suffix=".npy") as tmp:
            np.save(tmp, latents)
        done.append(shard["file"])
        atomic.write_json(progress_path, {"identity": identity, "done": done})
        log.info("latents: %s (%d samples)", shard["file"], shard["count"])
    manifest = dict(identity, splits=source["splits"], patches_dir=str(patches_dir))
    atomic.write_json(manifest_path, manifest)
    return manifest_path


class Shards:
    """Random access by global sample index over the memory-mapped shards of one split: the latent
    cache's (fp16 latents) or the patches' (uint8 pixels), which share the layout."""

    def __init__(self, directory: str | os.PathLike, split: str):
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        meta = self.manifest["splits"][split]
        self.inputs = meta["inputs"]
        self.shards = [(s["start"], s["count"], np.load(self.directory / s["file"], mmap_mode="r"))
                       for s in meta["shards"]]
        self.count = sum(count for _, count, _ in self.shards)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        """(inputs + 1, C, h, w) fp16: the inputs' latents, then the GT latent."""
        for start, count, array in self.shards:
            if start <= index < start + count:
                return np.array(array[index - start])
        raise IndexError(index)
