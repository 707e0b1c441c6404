"""Where the latent mode loses to the VAE ceiling, on a rendered test split that `vaeedof infer`
has fused: each method's pooled PSNR by distance to the nearest edge between two planes
(`gap.py`), and one more row, `hybrid_through_vae`: the hybrid output
(the best pixel fusion here) encoded and decoded by the frozen VAE, the latent a perfect latent
fusion of that quality would hold; and `input_selection_oracle`: at every pixel the input whose
7 x 7 neighbourhood is nearest the ground truth, the most that choosing among the inputs' own
pixels can give.

Prints the table; `--record` writes latent_gap.csv beside this script (rows of other `--split`
labels are kept) and the `latent-gap` figure's table in results/. Asserts nothing. From the
project's root:

    python -m experiments.latent_gap.run data/mattingmfif/test data/fused --split procedural --record
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from experiments.latent_gap.gap import GapAccumulator, edge_bins, input_selection_oracle, summary
from experiments.record import figure, merge_rows
from vaeedof.errors import VaeedofError
from vaeedof.evaluation.baselines import CEILING, HYBRID, LATENT, LATENT_ORACLE
from vaeedof.evaluation.infer import read_manifest
from vaeedof.fusion.loader import load_fuser
from vaeedof.images import as_float, read_image
from vaeedof.logs import progress
from vaeedof.render import layout

CSV = Path(__file__).parent / "latent_gap.csv"
METHODS = (LATENT, HYBRID, "gff", CEILING, LATENT_ORACLE)
THROUGH_VAE = "hybrid_through_vae"
INPUT_ORACLE = "input_selection_oracle"


def _hwc(image: torch.Tensor) -> np.ndarray:
    return as_float(image).clamp(0, 1).permute(1, 2, 0).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenes", type=Path, help="the rendered test split (scene folders)")
    parser.add_argument("fused", type=Path, help="what `vaeedof infer` wrote for it")
    parser.add_argument("--split", required=True, help="the label of these rows")
    parser.add_argument("--checkpoint", default=None, help="for its VAE (default: as vaeedof fuse chooses)")
    parser.add_argument("--record", action="store_true", help=f"write {CSV}")
    args = parser.parse_args()
    manifest = read_manifest(args.fused)
    missing = [m for m in METHODS if m not in manifest["methods"]]
    if missing:
        raise VaeedofError(f"{args.fused}: no {', '.join(missing)} (fused by an older `vaeedof infer`)")
    vae = load_fuser(args.checkpoint).vae
    gap = GapAccumulator()
    for name in progress(manifest["scenes"], desc="scenes"):
        scene = args.scenes / name
        raw_inputs, raw_gt = layout.load_tensors(scene)
        inputs, gt = [_hwc(image) for image in raw_inputs], _hwc(raw_gt)
        bins = edge_bins(layout.load_index(scene))
        gap.add_scene(bins)
        for method in METHODS:
            gap.add(method, bins, _hwc(read_image(args.fused / method / f"{name}.png")), gt)
        gap.add(INPUT_ORACLE, bins, input_selection_oracle(inputs, gt), gt)
        hybrid = as_float(read_image(args.fused / HYBRID / f"{name}.png"))
        with torch.inference_mode():
            gap.add(THROUGH_VAE, bins, _hwc(vae.reconstruct(hybrid[None])[0]), gt)
    rows = gap.rows(args.split)
    print("\n".join(summary(rows)))
    if args.record:
        figure("latent-gap", "\n".join(summary(merge_rows(CSV, "split", args.split, rows))) + "\n")


if __name__ == "__main__":
    try:
        main()
    except VaeedofError as exc:  # bad input: one line naming it, no traceback
        raise SystemExit(f"latent_gap: {exc}") from None
