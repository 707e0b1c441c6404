"""Small synthetic multi-focus patch sets for training tests (no rendering, no VAE weights)."""

from pathlib import Path

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


def export_tiny_checkpoint(folder, **info_changes):
    """A small random Fusion U-Net exported as `vaeedof train` does (weights and JSON), its JSON
    changed by `info_changes` (a key given as None is left out); the VAE checksums are made up."""
    import json

    from safetensors.torch import save_file

    from vaeedof.nets.unet import FusionUNet

    model = FusionUNet(32, 3, (8, 16, 32), 2)
    weights = Path(folder) / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    info = {"vae": "taef2", "vae_checksums": {"encoder": "0" * 64, "decoder": "0" * 64},
            "latent_channels": 32, "max_inputs": 3, "widths": [8, 16, 32], "attention_heads": 2}
    info = {k: v for k, v in (info | info_changes).items() if v is not None}
    weights.with_suffix(".json").write_text(json.dumps(info))
    return weights


def png_declaring(path, width: int, height: int):
    """A PNG whose valid header declares width x height pixels, its data a few bytes: what an
    input check must refuse from the header, before decoding."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))
                     + chunk(b"IEND", b""))
    return path
