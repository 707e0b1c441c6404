"""Fusion on photographs with a ground truth: focus stacks made from the held-out test
photographs (`assets.photographic.test_photos`) with occluding planes and the thin lens' disc
blur (`stacks.py`, `layers` model), a defocus renderer the model was not
trained on: per photograph `--crops` stacks of 2-5 planes at `--size` px, one frame per plane.

Every method the evaluation compares (`fusion_methods`: both output modes of the model, the
classical baselines, enfuse, and the peers and external commands of `evaluate` when installed;
a method that fails on a stack is counted, one that cannot run is named) and the VAE ceiling
(the ground truth through the frozen VAE), by PSNR and SSIM against the photograph. Prints the
summary; `--record` writes photo_stacks.csv beside this script and the `photo-stacks` figure's
table in results/. Asserts nothing. From the project's root:

    python -m experiments.photo_stacks.run PHOTOS \\
        --checkpoint src/vaeedof/release/fusion_release.safetensors --record
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from experiments.photo_stacks.stacks import held_out_crops, layered_stack, summary
from experiments.record import add_arguments, finish, run_study
from vaeedof import params as params_module
from vaeedof.evaluation.baselines import (
    CEILING,
    OK,
    failed_status,
    fuse_each,
    fusion_methods,
    unavailable_methods,
)
from vaeedof.fusion.loader import load_fuser
from vaeedof.images import as_float, psnr

CSV = Path(__file__).parent / "photo_stacks.csv"
STREAM = 47  # this script's random stream (the hand-held photo stacks use 43)


def main() -> None:
    import pyiqa

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="folder holding the held-out photographs (<stem>.jpg)")
    parser.add_argument("--crops", type=int, default=2, help="stacks per photograph")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--max-radius", type=float, default=8.0,
                        help="blur radius (px) of the nearest plane with the farthest in focus")
    add_arguments(parser, CSV)
    args = parser.parse_args()
    params = params_module.load(args.params)
    fuser = load_fuser(args.checkpoint, mode="hybrid")
    methods = fusion_methods(fuser, params["evaluate"])  # peers and external commands included
    unavailable = unavailable_methods(params["evaluate"])
    ssim = pyiqa.create_metric("ssim", device="cpu", as_loss=False)
    rows = []
    for stack, photo, rng in held_out_crops(args.photos, params, args.crops, STREAM):
        gt, frames = layered_stack(photo, rng, args.size, args.max_radius)
        floats = [as_float(frame) for frame in frames]  # as `vaeedof infer` reads its scenes
        with torch.inference_mode():
            results, failed = fuse_each(methods, floats, stack)
            results[CEILING] = fuser.vae.reconstruct(gt[None].to(fuser.device))[0].cpu()
        for name, image in results.items():
            image = image.float().clamp(0, 1)
            rows.append({"stack": stack, "planes": len(frames), "method": name,
                         "psnr": round(psnr(image, gt), 3),
                         "ssim": round(float(ssim(image[None], gt[None])), 4), "status": OK})
        rows += [{"stack": stack, "planes": len(frames), "method": name, "psnr": None, "ssim": None,
                  "status": failed_status(reason)} for name, reason in failed.items()]
    notes = [f"- {name}: not run, {reason}" for name, reason in unavailable.items()]
    finish("photo-stacks", "\n".join(summary(rows) + notes) + "\n", rows, CSV, args.record)


if __name__ == "__main__":
    run_study(main, "photo_stacks")
