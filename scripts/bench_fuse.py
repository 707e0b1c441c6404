"""Benchmark: seconds per stage of `vaeedof fuse` (load, read, align, encode, U-Net, decode,
compose, VAE check, write), the work each stage does (FLOPs counted by torch's flop counter), the rate it
achieves and how that compares with this machine's fp32 matmul rate (measured here: the roofline),
plus peak memory.

Uses the given (or exported) model, else random weights of the demo architecture (time and memory
do not depend on the weights); real images with --images, else random ones. Prints figures;
asserts nothing.

    python scripts/bench_fuse.py --images ../shared/data/real/Lytro/lytro-01/*.jpg
    python scripts/bench_fuse.py --size 4096 --inputs 7

`--record CASE` keeps the case's row in scripts/fuse_speed.csv and writes the `fuse-speed` figure's
table (every recorded case) in results/.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from vaeedof.fusion.engine import Fuser
from vaeedof.fusion.files import load_stack, write_fused
from vaeedof.fusion.loader import load_fuser
from vaeedof.fusion.options import ALIGN_MODES, OUTPUT_MODES, PRECISIONS
from vaeedof.images import LoadedImage
from vaeedof.nets.unet import FusionUNet
from vaeedof.nets.vae import SPECS, TinyVAE

CSV = Path(__file__).parent / "fuse_speed.csv"


def matmul_rate(device: torch.device, side: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an fp32 matmul on this device (the roofline for convolution-heavy work)."""
    a, b = (torch.randn(side, side, device=device) for _ in range(2))
    a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return repeats * 2 * side**3 / (time.perf_counter() - start) / 1e9


def flops_per_pixel(fuser: Fuser, side: int = 256) -> dict[str, float]:
    """FLOPs per image pixel of encoding, decoding and the U-Net (per input image pixel)."""
    image = torch.rand(1, 3, side, side, device=fuser.device)
    counts = {}
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            latent = fuser.vae.encode(image)
        counts["encode"] = counter.get_total_flops() / side**2
        with FlopCounterMode(display=False) as counter:
            fuser.vae.decode(latent)
        counts["decode"] = counter.get_total_flops() / side**2
        stack = latent[:, None].repeat(1, fuser.model.max_inputs, 1, 1, 1)
        with FlopCounterMode(display=False) as counter:
            fuser.model(stack, with_mix=True)
        counts["unet"] = counter.get_total_flops() / side**2
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="*", help="image files of one stack (default: random)")
    parser.add_argument("--size", type=int, default=512, help="side of random inputs")
    parser.add_argument("--inputs", type=int, default=2, help="number of random inputs")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--mode", default="hybrid", choices=OUTPUT_MODES)
    parser.add_argument("--align", default="auto", choices=ALIGN_MODES,
                        help="off for random inputs (independent noise frames cannot be registered)")
    parser.add_argument("--checkpoint", default="models/fusion_ema.safetensors")
    parser.add_argument("--cli-repeats", type=int, default=0, help="with --images: also time the whole "
                        "`vaeedof fuse` command (imports and loading included) this many times")
    parser.add_argument("--record", metavar="LABEL", help="also keep a row in scripts/fuse_speed.csv "
                        "and the `fuse-speed` figure's table in results/")
    args = parser.parse_args()

    start = time.perf_counter()
    if Path(args.checkpoint).exists():
        fuser = load_fuser(args.checkpoint, args.device, args.tile, mode=args.mode, precision=args.precision)
        source = args.checkpoint
    else:
        fuser = Fuser(FusionUNet(32, 7, (64, 128, 256)), TinyVAE(SPECS["taef2"]), args.device, args.tile,
                      mode=args.mode, precision=args.precision)
        source = "random weights (taef2 layout)"
    fuser.timings["load"] = time.perf_counter() - start
    start = time.perf_counter()
    if args.images:
        loaded = load_stack([Path(p) for p in args.images])
    else:
        loaded = [LoadedImage(torch.randint(0, 256, (3, args.size, args.size), dtype=torch.uint8), 8, None,
                              Path(f"random_{i}")) for i in range(args.inputs)]
    fuser.timings["read"] = time.perf_counter() - start
    width, height = loaded[0].size
    with tempfile.TemporaryDirectory() as tmp:
        wall = time.perf_counter()
        write_fused(fuser, loaded, Path(tmp) / "fused.png", vae_check_db=27.0, align=args.align)
        wall = time.perf_counter() - wall + fuser.timings["load"] + fuser.timings["read"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    device = torch.device(args.device)
    roof = matmul_rate(device)
    per_pixel = flops_per_pixel(fuser)
    pixels, n = height * width, len(loaded)
    levels = max(1, -(-n // fuser.model.max_inputs))  # hierarchical: extra encodes and decodes
    work = {"encode": per_pixel["encode"] * pixels * (n + (levels if n > fuser.model.max_inputs else 0)),
            "decode": per_pixel["decode"] * pixels * (levels + (1 if n > fuser.model.max_inputs else 0)),
            "unet": per_pixel["unet"] * pixels * levels}
    print(f"{n} inputs of {width}x{height}, tile {args.tile}, {fuser.device}, precision {args.precision}, "
          f"{torch.get_num_threads()} threads, {source}")
    print(f"roofline: fp32 matmul {roof:.0f} GFLOP/s; per pixel: encode {per_pixel['encode'] / 1e6:.2f}, "
          f"decode {per_pixel['decode'] / 1e6:.2f}, U-Net {per_pixel['unet'] / 1e6:.3f} MFLOP")
    print(f"{'stage':<10} {'seconds':>8} {'GFLOP':>9} {'GFLOP/s':>8} {'of roofline':>11}")
    row = {"case": args.record, "inputs": n, "width": width, "height": height, "device": str(fuser.device),
           "precision": args.precision, "wall_s": round(wall, 2), "peak_gib": round(peak, 2),
           "roofline_gflops": round(roof)}
    for stage in ("load", "read", "align", "encode", "unet", "decode", "compose", "vae_check", "write"):
        seconds = fuser.timings.get(stage, 0.0)
        row[f"{stage}_s"] = round(seconds, 2)
        if stage in work and seconds > 0:
            rate = work[stage] / seconds / 1e9
            row[f"{stage}_gflops"] = round(rate)
            print(f"{stage:<10} {seconds:>8.2f} {work[stage] / 1e9:>9.1f} {rate:>8.0f} {rate / roof:>10.0%}")
        else:
            print(f"{stage:<10} {seconds:>8.2f}")
    print(f"total {wall:.2f} s wall (in process, imports excluded); peak RSS {peak:.2f} GiB")
    if args.images and args.cli_repeats and Path(args.checkpoint).exists():
        row["cli_wall_s"] = cli_wall(args, args.cli_repeats)
        print(f"`vaeedof fuse` command: {row['cli_wall_s']} s wall (median of {args.cli_repeats})")
    if args.record:
        record(row, CSV)


def cli_wall(args, repeats: int) -> float:
    """Median wall seconds of the whole `vaeedof fuse` command on the given images."""
    import statistics
    import subprocess
    import sys

    command = [sys.executable, "-m", "vaeedof.cli", "fuse", *args.images, "-o", "", "--tile", str(args.tile),
               "--device", args.device, "--precision", args.precision, "--mode", args.mode,
               "--align", args.align]
    if Path(args.checkpoint).exists():
        command += ["--checkpoint", args.checkpoint]
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        command[command.index("-o") + 1] = str(Path(tmp) / "fused.png")
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    return round(statistics.median(times), 2)


def record(row: dict, path: Path) -> None:
    """Replace the row of the same case (or add it) in the CSV, atomically, and the `fuse-speed`
    figure's table in results/ (from every recorded case)."""
    import csv
    import shlex
    import sys

    from vaeedof import atomic
    from vaeedof.evaluation import results
    from vaeedof.provenance import git_commit

    rows = list(csv.DictReader(open(path))) if path.exists() else []
    rows = [r for r in rows if r["case"] != row["case"]] + [row]
    fields = list(row) + sorted({k for r in rows for k in r} - set(row))
    atomic.write_csv(path, rows, fields)
    table = speed_table([{k: str(v) for k, v in r.items()} for r in rows])
    figure = results.record("fuse-speed", table, shlex.join(["python", *sys.argv]), git_commit())
    print(f"recorded in {path} and {figure}")


def speed_table(rows: list[dict]) -> str:
    """The `fuse-speed` figure: the recorded cases' seconds per stage of `vaeedof fuse`."""
    lines = ["| case | inputs | size | device | command wall s | fusion wall s | align s | encode s | "
             "U-Net s | decode s | compose s | VAE check s | encode / decode GFLOP/s (matmul) | peak GiB |",
             "|---" * 14 + "|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['inputs']} | {r['width']}x{r['height']} | {r['device']} "
                     f"{r['precision']} | {r.get('cli_wall_s') or '-'} | {r['wall_s']} | "
                     f"{r.get('align_s', '-')} | "
                     f"{r['encode_s']} | {r['unet_s']} | "
                     f"{r['decode_s']} | {r['compose_s']} | {r['vae_check_s']} | "
                     f"{r.get('encode_gflops', '-')} / "
                     f"{r.get('decode_gflops', '-')} ({r['roofline_gflops']}) | {r['peak_gib']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
