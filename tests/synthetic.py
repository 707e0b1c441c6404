"""Small synthetic multi-focus patch sets for training tests (no rendering, no VAE weights)."""

import numpy as np
import torch

from vaeedof import atomic
from vaeedof.hashing import sha256_json
from vaeedof.nets.vae import SPECS, TinyVAE
from vaeedof.training import latents


def _blur(image: np.ndarray, radius: int) -> np.ndarray:
    out = image.astype(np.float32)
    for axis in (0, 1):
        out = sum(np.roll(out, shift, axis=axis) for shift in range(-radius, radius + 1)) / (2 * radius + 1)
    return out


def write_patch_set(directory, count: int = 8, val: int = 2, size: int = 32, inputs: int = 3,
                    seed: int = 0) -> None:
    """Each sample: a textured GT, and `inputs` renders each sharp in one vertical band only."""
    rng = np.random.default_rng(seed)
    manifest = {"format": 1, "size": size, "splits": {}}
    for split, n in (("train", count), ("val", val)):
        samples = []
        for _ in range(n):
            gt = rng.integers(0, 256, (size, size, 3)).astype(np.float32)
            gt = _blur(gt, 1)
            stack = []
            for k in range(inputs):
                blurred = _blur(gt, 3)
                band = slice(k * size // inputs, (k + 1) * size // inputs)
                blurred[:, band] = gt[:, band]
                stack.append(blurred)
            stack.append(gt)
            samples.append(np.stack(stack))
        array = np.clip(np.stack(samples), 0, 255).astype(np.uint8)
        name = f"{split}/shard_00000.npy"
        (directory / split).mkdir(parents=True, exist_ok=True)
        np.save(directory / name, array)
        manifest["splits"][split] = {"shards": [{"file": name, "start": 0, "count": n}], "count": n,
                                     "inputs": inputs, "scenes": []}
    manifest["fingerprint"] = sha256_json(manifest)
    atomic.write_json(directory / "manifest.json", manifest)


def random_vae(name: str = "taesd3") -> TinyVAE:
    torch.manual_seed(0)
    vae = TinyVAE(SPECS[name])
    for module in vae.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.05)
    vae.checksums = {"encoder": "random", "decoder": "random"}
    return vae


def make_latent_set(tmp_path, **kwargs):
    patches, cache = tmp_path / "patches", tmp_path / "latents"
    write_patch_set(patches, **kwargs)
    latents.build(random_vae(), patches, cache)
    return patches, cache
