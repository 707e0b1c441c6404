"""Training patches from the rendered train split: random crops holding every focus input and
the ground-truth crop, in .npy shards (uint8, N x (inputs + 1) x S x S x 3; GT last).

The last `patches.val_scenes` train scenes are held out for validation during training.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import VaeedofError
from ..hashing import sha256_json
from ..logs import get_logger, progress
from ..render import layout

STAGE = "patches"  # the owner of the patch folder (atomic.OWNER_FILE)
PATCH_FORMAT = 1


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic.atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def _crops(stack: np.ndarray, size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    height, width = stack.shape[1:3]
    if min(height, width) < size:
        raise VaeedofError(f"patches.size {size} exceeds the render size {width}x{height}")
    tops = rng.integers(0, height - size + 1, count)
    lefts = rng.integers(0, width - size + 1, count)
    return np.stack([stack[:, t:t + size, x:x + size] for t, x in zip(tops, lefts, strict=True)])


class _ShardWriter:
    """Collects crops and writes a shard whenever `shard_size` samples are pending."""

    def __init__(self, root: Path, split: str, shard_size: int):
        self.root, self.split, self.shard_size = root, split, shard_size
        self.shards: list[dict] = []
        self.pending: list[np.ndarray] = []
        self.start = 0

    def add(self, crops: np.ndarray) -> None:
        self.pending.append(crops)
        if sum(len(p) for p in self.pending) >= self.shard_size:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        name = f"{self.split}/shard_{len(self.shards):05d}.npy"
        array = np.concatenate(self.pending)
        _save_npy(self.root / name, array)
        self.shards.append({"file": name, "start": self.start, "count": len(array)})
        self.start += len(array)
        self.pending.clear()

    def close(self) -> list[dict]:
        self._flush()
        return self.shards


def extract(params: dict, data_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write train/ and val/ shards plus manifest.json under out_dir; return the manifest path."""
    cfg = params["patches"]
    scene_dirs = layout.rendered_scenes(data_dir)
    if len(scene_dirs) <= cfg["val_scenes"]:
        raise VaeedofError(f"{data_dir}: {len(scene_dirs)} train scenes, need more than "
                           f"patches.val_scenes = {cfg['val_scenes']}")
    held_out = scene_dirs[len(scene_dirs) - cfg["val_scenes"]:]
    groups = {"train": scene_dirs[: len(scene_dirs) - cfg["val_scenes"]], "val": held_out}
    out_dir = Path(out_dir)
    source = sha256_json({"seed": params["seed"], "patches": cfg, "format": PATCH_FORMAT, "scenes": [
        (d.name, layout.read_meta(d, needs=("fingerprint",))["fingerprint"]) for d in scene_dirs]})
    existing = out_dir / "manifest.json"
    if existing.exists() and json.loads(existing.read_text()).get("source") == source:
        get_logger().info("%s: up to date", out_dir)
        return existing
    manifest: dict = {"format": PATCH_FORMAT, "size": cfg["size"], "splits": {}, "source": source}
    with atomic.atomic_directory(out_dir, STAGE, [data_dir]) as tmp:
        for split, dirs in groups.items():
            writer = _ShardWriter(tmp, split, cfg["shard_size"])
            per_scene = cfg["per_scene"] if split == "train" else cfg["val_per_scene"]
            for scene_dir in progress(dirs, desc=f"patches/{split}"):
                rng = np.random.default_rng([params["seed"], 77, scene_dirs.index(scene_dir)])
                writer.add(_crops(layout.load_uint8(scene_dir), cfg["size"], per_scene, rng))
            shards = writer.close()
            inputs = int(np.load(tmp / shards[0]["file"], mmap_mode="r").shape[1]) - 1 if shards else 0
            manifest["splits"][split] = {"shards": shards, "count": len(dirs) * per_scene,
                                         "inputs": inputs, "scenes": [d.name for d in dirs]}
        manifest["fingerprint"] = sha256_json(manifest)
        atomic.write_json(tmp / "manifest.json", manifest)
    get_logger().info("patches: %s", {s: m["count"] for s, m in manifest["splits"].items()})
    return out_dir / "manifest.json"


def read_manifest(directory: str | os.PathLike) -> dict:
    return atomic.read_json(Path(directory) / "manifest.json", "run the previous stage first")
