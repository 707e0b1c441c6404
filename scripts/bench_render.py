"""Benchmark: seconds per render and per scene, and DOF noise versus samples.

Renders one demo scene at several sample counts (with and without OpenImageDenoise) and reports
each focus render's PSNR against a high-sample reference. Prints figures; asserts nothing.

    python scripts/bench_render.py [--resolution 128] [--reference-samples 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from vaeedof import params as params_mod
from vaeedof import scenes
from vaeedof.assets.build import build, load_index
from vaeedof.images import psnr
from vaeedof.render import layout
from vaeedof.render.renderer import render_scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--reference-samples", type=int, default=256)
    parser.add_argument("--samples", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scene", type=int, default=1)
    args = parser.parse_args()
    params = params_mod.load(args.params)
    params["render"]["resolution"] = args.resolution
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        index = load_index(build(params, tmp / "resources"))
        spec = scenes.sample_scene(params, "train", args.scene, index)
        print(f"scene train_{args.scene:05d}: f/{spec['camera']['fstop']:.2f}, "
              f"{spec['camera']['focal_length_mm']:.0f} mm, planes at "
              f"{[p['distance_m'] for p in spec['planes']]}")

        def render(samples: int, denoise: bool) -> tuple[list[np.ndarray], dict]:
            p = dict(params, render=dict(params["render"], samples=samples, denoise=denoise))
            out = tmp / f"s{samples}_{int(denoise)}"
            render_scene(spec, p, out, threads=args.threads, blender_log=tmp / "blender.log")
            meta = layout.read_meta(out)
            images = [np.asarray(Image.open(out / layout.focus_file(k))) / 255.0 for k in spec["focus_order"]]
            return images, meta["render_seconds"]

        reference, _ = render(args.reference_samples, False)
        print(f"\n{args.resolution} px, {args.threads} threads; PSNR vs {args.reference_samples} spp "
              "(mean over the 6 focus renders)")
        print(f"{'samples':>8} {'denoise':>8} {'PSNR dB':>8} {'s/render':>9} {'s/scene':>8}")
        for samples in args.samples:
            for denoise in (False, True):
                images, seconds = render(samples, denoise)
                value = statistics.mean(psnr(a, b) for a, b in zip(images, reference, strict=True))
                per_render = statistics.median(v for k, v in seconds.items() if k.startswith("focus"))
                print(f"{samples:>8} {str(denoise):>8} {value:>8.1f} {per_render:>9.2f} "
                      f"{seconds['total']:>8.2f}")


if __name__ == "__main__":
    main()
