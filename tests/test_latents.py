import json

import numpy as np

from vaeedof.training import latents
from vaeedof.training.latents import Shards

from .synthetic import random_vae, write_patch_set


def test_cache_shards_manifest_and_lookup(tmp_path):
    write_patch_set(tmp_path / "patches", count=6, val=2, size=32, inputs=3)
    vae = random_vae()
    manifest_path = latents.build(vae, tmp_path / "patches", tmp_path / "latents")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["vae"] == "taesd3" and manifest["latent_channels"] == 16
    assert manifest["vae_checksums"] == vae.checksums
    cache = Shards(tmp_path / "latents", "train")
    assert len(cache) == 6 and cache.inputs == 3
    sample = cache[5]
    assert sample.shape == (4, 16, 4, 4) and sample.dtype == np.float16
    pixels = np.load(tmp_path / "patches/train/shard_00000.npy")[5:6]
    assert np.array_equal(latents.encode_stack(vae, pixels)[0], sample)


def test_cache_resumes_and_rebuilds_when_the_vae_changes(tmp_path):
    write_patch_set(tmp_path / "patches", count=4, val=2, size=32)
    cache = tmp_path / "latents"
    latents.build(random_vae(), tmp_path / "patches", cache)
    train_shard = cache / "train/shard_00000.npy"
    val_shard = cache / "val/shard_00000.npy"
    # Interrupted before the val shard: only that shard is encoded again.
    val_shard.unlink()
    before = train_shard.stat().st_mtime_ns
    latents.build(random_vae(), tmp_path / "patches", cache)
    assert val_shard.exists() and train_shard.stat().st_mtime_ns == before
    # Another VAE (checksum) rebuilds everything.
    other = random_vae()
    other.checksums = {"encoder": "other", "decoder": "other"}
    latents.build(other, tmp_path / "patches", cache)
    assert train_shard.stat().st_mtime_ns != before
    assert json.loads((cache / "manifest.json").read_text())["vae_checksums"]["encoder"] == "other"
    assert not list(cache.rglob("*.tmp*"))
