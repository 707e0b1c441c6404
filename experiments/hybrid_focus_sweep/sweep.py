"""Dev-set sweep: the hybrid mix's pixel-level focus and reblur terms (`fusion.hybrid_focus_weight`,
`fusion.hybrid_reblur_weight`, at the parameters' `fusion.hybrid_focus_floor`) on real pairs
without ground truth, scored by Q^AB/F, beside GFF; with `--rendered`, also PSNR against the
ground truth of a rendered split.

The settings are chosen on a development collection (MFI-WHU by default) so that Lytro and MFFW
stay held out; the rendered split guards against what Q^AB/F does not see (a focus measure's
halo beside edges costs PSNR, not edge transfer). Each stack is encoded, fused and decoded once;
only the mix is recomputed per setting. Prints the table; `--record` writes
hybrid_focus_sweep.csv beside this script and the `hybrid-sweep` figure's table in results/.
Asserts nothing. From the project's root:

    python -m experiments.hybrid_focus_sweep.sweep MFI-WHU \
        --rendered RELEASE_DATA/mattingmfif/test \
        --checkpoint src/vaeedof/release/fusion_release.safetensors --record
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path

import numpy as np
import torch

from experiments.record import figure
from vaeedof import atomic
from vaeedof.errors import VaeedofError
from vaeedof.evaluation.baselines import HYBRID, guided_filter_fusion
from vaeedof.evaluation.nr_metrics import luminance, qabf
from vaeedof.evaluation.real import load_real_stack
from vaeedof.fusion.files import find_stacks
from vaeedof.fusion.loader import choose_checkpoint, load_fuser
from vaeedof.images import as_float, psnr
from vaeedof.logs import progress
from vaeedof.nets.hybrid import DEFAULT_SETTINGS, HybridSettings, compose
from vaeedof.nets.unet import fill_inputs
from vaeedof.nets.vae import SCALE, pad_to_multiple
from vaeedof.render import layout

CSV = Path(__file__).parent / "hybrid_focus_sweep.csv"
WEIGHTS = (0.0, 2.0, 4.0, 8.0, 16.0)
REBLUR_WEIGHTS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)


def ingredients(fuser, images: list[torch.Tensor]):
    """What the mix reads and does not depend on the settings: the padded inputs, the decoded
    fusion and the mix logits at pixel resolution (one tile: dev images are small)."""
    padded = [pad_to_multiple(as_float(image), SCALE) for image in images]
    with torch.inference_mode():
        fused, mix = fuser.fuse_latents([fuser.encode(image) for image in padded])
        decoded = fuser.vae.decode(fused[None].to(fuser.device)).float().cpu().clamp(0, 1)
    inputs = fill_inputs(torch.stack(padded)[None], fuser.model.max_inputs)
    logits = fuser.pixel_logits(mix.cpu(), (0, inputs.shape[-2], 0, inputs.shape[-1]))  # as fusing does
    return inputs, decoded[..., :inputs.shape[-2], :inputs.shape[-1]], logits


def _settings() -> list[HybridSettings]:
    # the other settings as the parameters set them
    return [dataclasses.replace(DEFAULT_SETTINGS, focus_weight=weight, reblur_weight=reblur)
            for weight, reblur in itertools.product(WEIGHTS, REBLUR_WEIGHTS)]


def _mixes(fuser, images: list[torch.Tensor]):
    """(settings, hybrid output) for every setting of the sweep, cropped to the input size."""
    height, width = images[0].shape[-2:]
    inputs, decoded, logits = ingredients(fuser, images)
    for settings in _settings():
        with torch.inference_mode():
            out = compose(logits, inputs, decoded, fuser.model.mix_sharpness, settings)[0]
        yield settings, out[:, :height, :width].clamp(0, 1)


def _key(settings: HybridSettings) -> tuple:
    return HYBRID, settings.focus_weight, settings.focus_floor, settings.reblur_weight


def real_scores(fuser, folders: list[str]) -> tuple[str, int, dict]:
    """Q^AB/F per setting (and GFF's) over the real stacks without ground truth."""
    stacks = find_stacks(folders)
    scores: dict[tuple, list[float]] = {}
    for _, paths in progress(stacks, desc="stacks"):
        images = load_real_stack(paths)
        greys = [luminance(as_float(image)) for image in images]
        scores.setdefault(("gff", None, None, None), []).append(
            qabf(greys, luminance(guided_filter_fusion([as_float(i) for i in images]).clamp(0, 1))))
        for settings, out in _mixes(fuser, images):
            scores.setdefault(_key(settings), []).append(
                qabf(greys, luminance(out)))
    return Path(stacks[0][1][0]).parent.parent.name, len(stacks), scores


def rendered_scores(fuser, folder: Path, name: str) -> tuple[str, int, dict]:
    """PSNR per setting (and GFF's) over a rendered split with ground truth."""
    scenes = layout.rendered_scenes(folder)
    scores: dict[tuple, list[float]] = {}
    for scene in progress(scenes, desc="scenes"):
        inputs, gt = layout.load_tensors(scene)
        gff = guided_filter_fusion(inputs).clamp(0, 1)
        scores.setdefault(("gff", None, None, None), []).append(psnr(gff, gt))
        for settings, out in _mixes(fuser, inputs):
            scores.setdefault(_key(settings), []).append(
                psnr(out, gt))
    return name, len(scenes), scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stacks", nargs="+", help="a collection folder or stack folders")
    parser.add_argument("--rendered", type=Path, default=None,
                        help="also PSNR on a rendered split with ground truth (a photographic test split)")
    parser.add_argument("--rendered-name", default="photographic test split", help="its name in the table")
    parser.add_argument("--checkpoint", default=None, help="default: as vaeedof fuse chooses")
    parser.add_argument("--record", action="store_true", help="write hybrid_focus_sweep.csv here and the "
                        "figure's table in results/")
    args = parser.parse_args()
    fuser = load_fuser(args.checkpoint, mode="hybrid")
    model = Path(choose_checkpoint(args.checkpoint)[0]).name
    measured = [("qabf", *real_scores(fuser, args.stacks))]
    if args.rendered:
        measured.append(("psnr", *rendered_scores(fuser, args.rendered, args.rendered_name)))
    rows = [{"collection": collection, "stacks": count, "model": model, "method": method,
             "focus_weight": "" if weight is None else weight, "focus_floor": "" if floor is None else floor,
             "reblur_weight": "" if reblur is None else reblur,
             "metric": metric, "value": round(float(np.mean(values)), 5)}
            for metric, collection, count, scores in measured
            for (method, weight, floor, reblur), values in scores.items()]
    for row in rows:
        print(f"{row['collection']:>24} {row['method']:>15} focus {row['focus_weight']!s:>4} "
              f"floor {row['focus_floor']!s:>7} reblur {row['reblur_weight']!s:>4}: "
              f"{row['metric']} {row['value']:.4f}")
    table = sweep_table(rows)
    print(table, end="")
    if args.record:
        atomic.write_csv(CSV, rows)
        figure("hybrid-sweep", table)


def sweep_table(rows: list[dict]) -> str:
    """The `hybrid-sweep` figure: the hybrid output per focus weight (rows) and reblur weight
    (columns), Q^AB/F on the development collection and, when measured, PSNR on a rendered
    split, each beside GFF's."""
    metrics = [m for m in ("qabf", "psnr") if any(r["metric"] == m for r in rows)]
    mine = [r for r in rows if r["method"] == HYBRID]
    reblurs = sorted({float(r["reblur_weight"]) for r in mine})
    weights = sorted({float(r["focus_weight"]) for r in mine})
    floors = sorted({float(r["focus_floor"]) for r in mine})
    score = {(r["metric"], float(r["focus_weight"]), float(r["reblur_weight"])): float(r["value"])
             for r in mine}
    label = {"qabf": "Q^AB/F", "psnr": "PSNR"}
    columns = [f"{label[m]}, reblur {b:g}" for m in metrics for b in reblurs]
    lines = ["| focus weight | " + " | ".join(columns) + " |",
             "|---" * (len(reblurs) * len(metrics) + 1) + "|"]
    lines += [f"| {w:g} | " + " | ".join(f"{score[(m, w, b)]:.{4 if m == 'qabf' else 2}f}"
                                         for m in metrics for b in reblurs) + " |" for w in weights]
    notes = []
    for metric in metrics:
        first = next(r for r in rows if r["metric"] == metric)
        gff = next(float(r["value"]) for r in rows if r["metric"] == metric and r["method"] == "gff")
        notes.append(f"{label[metric]} on {first['collection']} ({first['stacks']} stacks): GFF "
                     f"{gff:.{4 if metric == 'qabf' else 2}f}")
    return ("\n".join(lines) + f"\n\nModel `{rows[0]['model']}`, focus floor "
            f"{', '.join(f'{f:g}' for f in floors)}. " + "; ".join(notes) + ".\n")


if __name__ == "__main__":
    try:
        main()
    except VaeedofError as exc:  # bad input: one line naming it, no traceback
        raise SystemExit(f"sweep_hybrid_focus: {exc}") from None
