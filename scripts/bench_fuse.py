"""Benchmark: wall time and peak memory of tiled fusion of N inputs of S x S pixels.

Uses the exported model when it exists, else random weights of the demo architecture (timing and
memory do not depend on the weights). Prints figures; asserts nothing.

    python scripts/bench_fuse.py [--size 4096] [--inputs 7] [--tile 512] [--device cpu]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

from vaeedof.fusion.engine import Fuser
from vaeedof.fusion.loader import load_fuser
from vaeedof.nets.unet import FusionUNet
from vaeedof.nets.vae import SPECS, TinyVAE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--inputs", type=int, default=7)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", default="models/fusion_ema.safetensors")
    args = parser.parse_args()
    if Path(args.checkpoint).exists():
        fuser = load_fuser(args.checkpoint, args.device, args.tile)
        source = args.checkpoint
    else:
        fuser = Fuser(FusionUNet(32, 7, (64, 128, 256)), TinyVAE(SPECS["taef2"]), args.device, args.tile)
        source = "random weights (taef2 layout)"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    images = [torch.rand(3, args.size, args.size) for _ in range(args.inputs)]
    start = time.perf_counter()
    fused = fuser.fuse(images)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{args.inputs} inputs of {args.size}x{args.size}, tile {args.tile}, {args.device}, "
          f"{torch.get_num_threads()} threads, {source}")
    print(f"fused {tuple(fused.shape)} in {seconds:.1f} s; peak RSS {peak / 1024**2:.2f} GiB "
          f"(before inputs: {before / 1024**2:.2f} GiB; inputs alone: "
          f"{args.inputs * 3 * args.size**2 * 4 / 1024**3:.2f} GiB)")


if __name__ == "__main__":
    main()
