"""The fast path (`vaeedof fuse --quality fast`, the default) against the max path on the two kinds of
stack it changes, with a ground truth:

- large frames: gt-stacks s512 brought to 1024 x 1024 (bicubic; the same scenes at twice the
  resolution, blur twice as wide in pixels), where the fast path's network decides on 512 x 512 views;
- deep stacks: focal sweeps of `--frames` frames made from the held-out photographs with the
  `depth` model of experiments/photo_stacks (a smooth depth map, a Gaussian blur growing with the
  distance from each frame's focus), where the fast path merges neighbouring frames by focus first.

Frames the benchmark collections hold (Lytro, MFFW, MFI-WHU, gt-stacks s256/s512: at most 7 frames
of at most 768 x 768) take the max path either way, bit for bit. PSNR and SSIM of the 8-bit output
against the truth, and seconds per stack (the fusion only, on this machine). Prints the table;
`--record` writes fast_path.csv beside this script and the `fast-path` figure's table in results/.
Asserts nothing. From the project's root:

    python -m experiments.fast_path.run GT_STACKS/s512 PHOTOS \\
        --checkpoint src/vaeedof/release/fusion_release.safetensors --record
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from experiments.photo_stacks.stacks import held_out_crops, sweep_stack
from experiments.record import add_arguments, finish, run_study
from experiments.registered_stacks.run import stacks_in
from vaeedof import params as params_module
from vaeedof.fusion.loader import load_fuser
from vaeedof.images import as_float, psnr, read_image

CSV = Path(__file__).parent / "fast_path.csv"
# Random stream: photo_stacks uses 47, the hand-held stacks 43; the README picture 53 too (layers).
STREAM = 53
QUALITIES = ("max", "fast")


def upscaled_stacks(folder: Path):
    """(name, frames, truth) of every stack in `folder`, each image at twice its size (bicubic)."""
    def twice(path: Path) -> torch.Tensor:
        image = as_float(read_image(path))[None]
        return F.interpolate(image, scale_factor=2, mode="bicubic", align_corners=False)[0].clamp(0, 1)

    for name, frames, gt in stacks_in(folder):
        yield name, [twice(path) for path in frames], twice(gt)


def sweep_stacks(photos: Path, params: dict, frames: int, size: int, max_sigma: float):
    """(name, frames, truth) of one focal sweep per held-out photograph (`depth` model)."""
    for name, photo, rng in held_out_crops(photos, params, 1, STREAM):
        gt, sweep = sweep_stack(photo, rng, size, frames, max_sigma)
        yield name, sweep, gt


def score(fuser, label: str, stacks, ssim) -> list[dict]:
    rows = []
    for name, frames, gt in stacks:
        for quality in QUALITIES:
            fuser.quality = quality
            started = time.perf_counter()
            fused = fuser.fuse(frames, mode="hybrid")
            seconds = time.perf_counter() - started
            fused = torch.round(fused.float().clamp(0, 1) * 255) / 255  # as `vaeedof fuse` writes it
            rows.append({"set": label, "stack": name, "frames": len(frames),
                         "size": f"{gt.shape[2]}x{gt.shape[1]}", "quality": quality,
                         "psnr": round(psnr(fused, gt), 4), "seconds": round(seconds, 2),
                         "ssim": round(float(ssim(fused[None], gt[None])), 5)})
            print(f"{label} {name} {quality}: {rows[-1]['psnr']:.2f} dB, {seconds:.1f} s", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """Per set and quality: mean PSNR, SSIM and seconds, and on how many stacks fast beats max."""
    lines = ["| set | stacks | frames | size | quality | PSNR | SSIM | seconds | PSNR above max's on |",
             "|---" * 9 + "|"]
    for label in dict.fromkeys(r["set"] for r in rows):
        mine = [r for r in rows if r["set"] == label]
        best = {r["stack"]: float(r["psnr"]) for r in mine if r["quality"] == "max"}
        for quality in QUALITIES:
            these = [r for r in mine if r["quality"] == quality]
            frames = sorted({int(r["frames"]) for r in these})
            above = "-" if quality == "max" else \
                f"{sum(float(r['psnr']) > best[r['stack']] for r in these)} of {len(these)}"
            lines.append(f"| {label} | {len(these)} | {frames[0]}-{frames[-1]} | {these[0]['size']} | "
                         f"{quality} | "
                         f"{np.mean([float(r['psnr']) for r in these]):.2f} | "
                         f"{np.mean([float(r['ssim']) for r in these]):.4f} | "
                         f"{np.mean([float(r['seconds']) for r in these]):.1f} | {above} |")
    return "\n".join(lines) + "\n\nSeconds: the fusion alone, per stack, on the machine that recorded it.\n"


def main() -> None:
    import pyiqa

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("s512", type=Path, help="gt-stacks' s512 folder (stack folders with gt.png)")
    parser.add_argument("photos", type=Path, help="folder holding the held-out photographs (<stem>.jpg)")
    parser.add_argument("--frames", type=int, default=24, help="frames per focal sweep")
    parser.add_argument("--size", type=int, default=384, help="side of a focal sweep's frames")
    parser.add_argument("--max-sigma", type=float, default=6.0, help="blur sigma (px) at the farthest focus")
    add_arguments(parser, CSV)
    args = parser.parse_args()
    params = params_module.load(args.params)
    fuser = load_fuser(args.checkpoint, mode="hybrid")
    ssim = pyiqa.create_metric("ssim", device="cpu", as_loss=False)
    with torch.inference_mode():
        rows = score(fuser, "gt-stacks s512 at 2x", upscaled_stacks(args.s512), ssim)
        rows += score(fuser, f"focal sweeps, {args.frames} frames",
                      sweep_stacks(args.photos, params, args.frames, args.size, args.max_sigma), ssim)
    finish("fast-path", table(rows), rows, CSV, args.record)


if __name__ == "__main__":
    run_study(main, "fast_path")
