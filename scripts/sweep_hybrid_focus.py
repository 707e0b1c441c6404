"""Dev-set sweep: the hybrid mix's pixel-level focus term (`fusion.hybrid_focus_weight`,
`fusion.hybrid_focus_floor`) on real pairs without ground truth, scored by Q^AB/F, beside GFF.

The settings are chosen on a development collection (MFI-WHU by default) so that Lytro and MFFW
stay held out. Each stack is encoded, fused and decoded once; only the mix is recomputed per
setting. Prints the table; `--record` writes reports/hybrid_focus_sweep.csv, from which the
README's block is generated. Asserts nothing.

    python scripts/sweep_hybrid_focus.py ../shared/data/real/MFI-WHU --record
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vaeedof import atomic
from vaeedof.errors import VaeedofError
from vaeedof.evaluation.baselines import guided_filter_fusion
from vaeedof.evaluation.nr_metrics import luminance, qabf
from vaeedof.evaluation.real import load_real_stack
from vaeedof.fusion.files import find_stacks
from vaeedof.fusion.loader import load_fuser
from vaeedof.images import as_float
from vaeedof.logs import progress
from vaeedof.nets.hybrid import HybridSettings, compose
from vaeedof.nets.unet import fill_inputs
from vaeedof.nets.vae import SCALE, pad_to_multiple

WEIGHTS = (0.0, 2.0, 4.0, 8.0)
FLOORS = (1e-4, 3e-4, 1e-3)


def ingredients(fuser, images: list[torch.Tensor]):
    """What the mix reads and does not depend on the settings: the padded inputs, the decoded
    fusion and the mix logits at pixel resolution (one tile: dev images are small)."""
    padded = [pad_to_multiple(as_float(image), SCALE) for image in images]
    with torch.inference_mode():
        fused, mix = fuser.fuse_latents([fuser.encode(image) for image in padded])
        decoded = fuser.vae.decode(fused[None].to(fuser.device)).float().cpu().clamp(0, 1)
    logits = F.interpolate(mix[None].cpu(), scale_factor=SCALE, mode="bilinear", align_corners=False)
    inputs = fill_inputs(torch.stack(padded)[None], fuser.model.max_inputs)
    return inputs, decoded[..., :inputs.shape[-2], :inputs.shape[-1]], logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stacks", nargs="+", help="a collection folder or stack folders")
    parser.add_argument("--checkpoint", default=None, help="default: as vaeedof fuse chooses")
    parser.add_argument("--radius", type=int, default=2)
    parser.add_argument("--record", action="store_true", help="write reports/hybrid_focus_sweep.csv")
    args = parser.parse_args()
    fuser = load_fuser(args.checkpoint, mode="hybrid")
    stacks = find_stacks(args.stacks)
    collection = Path(stacks[0][1][0]).parent.parent.name
    scores: dict[tuple, list[float]] = {}
    for _, paths in progress(stacks, desc="stacks"):
        images = load_real_stack(paths)
        greys = [luminance(as_float(image)) for image in images]
        height, width = images[0].shape[-2:]
        inputs, decoded, logits = ingredients(fuser, images)
        scores.setdefault(("gff", None, None), []).append(
            qabf(greys, luminance(guided_filter_fusion([as_float(i) for i in images]).clamp(0, 1))))
        for weight, floor in itertools.product(WEIGHTS, FLOORS):
            settings = HybridSettings(radius=args.radius, focus_weight=weight, focus_floor=floor)
            with torch.inference_mode():
                out = compose(logits, inputs, decoded, fuser.model.mix_sharpness, settings)[0]
            scores.setdefault(("vaeedof_hybrid", weight, floor), []).append(
                qabf(greys, luminance(out[:, :height, :width].clamp(0, 1))))
    rows = [{"collection": collection, "stacks": len(stacks), "method": method,
             "focus_weight": "" if weight is None else weight, "focus_floor": "" if floor is None else floor,
             "qabf": round(float(np.mean(values)), 5)} for (method, weight, floor), values in scores.items()]
    for row in rows:
        print(f"{row['method']:>15} weight {row['focus_weight']!s:>4} floor {row['focus_floor']!s:>7}: "
              f"Q^AB/F {row['qabf']:.4f}")
    if args.record:
        atomic.write_csv(Path("reports") / "hybrid_focus_sweep.csv", rows)


if __name__ == "__main__":
    try:
        main()
    except VaeedofError as exc:  # bad input: one line naming it, no traceback
        raise SystemExit(f"sweep_hybrid_focus: {exc}") from None
