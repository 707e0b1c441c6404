"""Benchmark: training samples per second read from the latent cache versus encoding the same
patches with the frozen VAE on the fly (why the cache exists). Prints figures; asserts nothing.

    python scripts/bench_latent_cache.py [--patches data/patches] [--latents data/latents] [--batch 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vaeedof import params as params_mod
from vaeedof.nets.vae import load_from_params
from vaeedof.training.latents import LatentShards, encode_stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--patches", default="data/patches")
    parser.add_argument("--latents", default="data/latents")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    params = params_mod.load(args.params)
    cache = LatentShards(args.latents, "train")
    rng = np.random.default_rng(0)
    pixels = np.load(f"{args.patches}/{cache.manifest['splits']['train']['shards'][0]['file']}",
                     mmap_mode="r")
    vae = load_from_params(params)
    count = args.batch * args.batches

    start = time.perf_counter()
    for _ in range(args.batches):
        torch.from_numpy(np.stack([cache[int(i)] for i in rng.integers(0, len(cache), args.batch)]))
    cached = count / (time.perf_counter() - start)

    start = time.perf_counter()
    for _ in range(args.batches):
        chosen = np.sort(rng.integers(0, len(pixels), args.batch))
        encode_stack(vae, np.asarray(pixels[chosen]))
    on_the_fly = count / (time.perf_counter() - start)
    print(f"{torch.get_num_threads()} threads, batch {args.batch}, patch {params['patches']['size']} px, "
          f"{cache.inputs} inputs + GT per sample, VAE {params['vae']['name']}")
    print(f"latent cache:     {cached:10.1f} samples/s")
    print(f"encode on the fly:{on_the_fly:10.1f} samples/s  ({cached / on_the_fly:.0f}x slower)")


if __name__ == "__main__":
    main()
