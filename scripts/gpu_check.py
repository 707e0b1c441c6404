"""The CUDA paths on a GPU machine, in one short run: latent caching on the GPU, training with bf16
autocast (hybrid loss included), torchrun with NCCL, tiled fusion of 7 x 4096^2 inputs in both
output modes (time, peak GPU memory), and the throughput table. Prints figures; asserts only
that each path runs and gives finite, sensible numbers.

    python scripts/gpu_check.py --out OUT_FOLDER      (VAEEDOF_ASSET_MIRROR must hold TAEF2)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.synthetic import write_patch_set  # noqa: E402
from vaeedof import atomic  # noqa: E402
from vaeedof.evaluation.figures import throughput_table  # noqa: E402
from vaeedof.fusion.engine import Fuser  # noqa: E402
from vaeedof.nets.vae import load_vae  # noqa: E402
from vaeedof.params import load  # noqa: E402
from vaeedof.training import latents  # noqa: E402
from vaeedof.training.train import train  # noqa: E402


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/vaeedof-gpu"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--device", default="cuda", help="cpu: a quick smoke test of this script")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    cuda = args.device == "cuda"
    assert torch.cuda.is_available() or not cuda, "no CUDA device"
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    section("device")
    print(torch.__version__, torch.version.cuda, name)
    results: dict = {"device": name, "torch": torch.__version__}

    params = load(ROOT / "params.yaml")
    params["patches"].update(size=64)
    params["train"].update(steps=args.steps, global_batch=32, val_every=args.steps // 2,
                           checkpoint_every=args.steps // 2, log_every=50)
    params_file = work / "params.yaml"
    params_file.write_text(yaml.safe_dump(copy.deepcopy(params)))

    section("latent cache on the GPU (TAEF2)")
    vae = load_vae("taef2", work / "resources").to(args.device)
    write_patch_set(work / "patches", count=1024 if cuda else 32, val=32 if cuda else 4, size=64, inputs=6)
    start = time.perf_counter()
    latents.build(vae, work / "patches", work / "latents")
    results["latents_s"] = time.perf_counter() - start
    print(f"encoded the patches (7 images each, 64 px) in {results['latents_s']:.1f} s")

    section("training: CUDA, bf16 autocast, hybrid loss, EMA, validation")
    start = time.perf_counter()
    weights = train(params, work / "latents", work / "patches", work / "models",
                    vae_loader=lambda: load_vae("taef2", work / "resources"), device=args.device, track=False)
    results["train_s"] = time.perf_counter() - start
    info = json.loads((work / "models/fusion_ema.json").read_text())
    results["train_metrics"] = info["final_metrics"]
    print(f"{args.steps} steps in {results['train_s']:.1f} s; {info['final_metrics']}")
    assert math.isfinite(info["final_metrics"]["loss"])

    section("torchrun + NCCL (one process per GPU)")
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                          "--nproc-per-node", str(max(1, torch.cuda.device_count())), "-m", "vaeedof.cli",
                          "--params", str(params_file), "--set", "train.steps=40",
                          "--set", "train.val_every=0", "train", "--device", args.device,
                          "--latents", str(work / "latents"),
                          "--patches", str(work / "patches"), "--out", str(work / "ddp"), "--no-mlflow",
                          "--resources", str(work / "resources")],
                         env=env, capture_output=True, text=True, timeout=300)
    print(run.stderr[-1500:])
    results["torchrun_nccl_rc"] = run.returncode
    assert run.returncode == 0

    section(f"tiled fusion: 7 x {args.size}^2, tile 512, both output modes")
    from safetensors.torch import load_file

    from vaeedof.nets.unet import FusionUNet

    model = FusionUNet(info["latent_channels"], info["max_inputs"], tuple(info["widths"]),
                       info["attention_heads"])
    model.load_state_dict(load_file(str(weights)))
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, args.size // 16, args.size // 16, generator=generator)
    base = torch.nn.functional.interpolate(coarse, size=(args.size, args.size), mode="bilinear")[0]
    stack = [(base + 0.05 * k * torch.rand(3, args.size, args.size, generator=generator)).clamp(0, 1)
             for k in range(7)]
    for mode in ("latent", "hybrid"):
        fuser = Fuser(model, vae, args.device, 512, mode=mode)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
        start = time.perf_counter()
        fused = fuser.fuse(stack)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        results[f"fuse_{mode}_s"], results[f"fuse_{mode}_peak_gib"] = seconds, peak
        print(f"{mode}: {seconds:.1f} s, peak GPU memory {peak:.2f} GiB, output {tuple(fused.shape)}")
        assert torch.isfinite(fused).all()

    section("throughput (512 px, 2..7 inputs)")
    rows = throughput_table(Fuser(model, vae, args.device, 512), size=512 if cuda else 128,
                            repeats=3 if cuda else 1)
    for row in rows:
        print(row)
    results["throughput"] = rows
    atomic.write_json(args.out / "gpu_check.json", results)


if __name__ == "__main__":
    main()
