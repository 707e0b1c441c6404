"""Ours beside every method the evaluation compares, on registered focus stacks with a ground
truth: `../shared/data/gt-stacks` (photographs composited in depth layers with the thin lens' disc
blur; nearer layers veil what lies behind them) or any folder of stacks laid out as the rendered
split is (`<stack>/focus_<k>.png` near to far, `<stack>/gt.png`), such as the release's rendered
test split.

Beside the default output, the hybrid output with other mix settings over the same model
(`VARIANTS`): the mix as it was before the selection smoothing, and the ablations that chose it
(docs/method.md, "Selection smoothing"). The frames are fused as they are (`--align off`; the
default `--align auto` leaves registered stacks alone, checked by ../shared/tools/align-regression.sh).
PSNR and SSIM against gt.png per set, and on how many stacks each method's PSNR is above the best
peer's (the `evaluate.peers` method with the highest mean on that set). Prints the table;
`--record` writes registered_stacks.csv beside this script and the `registered-stacks` figure's
table in results/. Asserts nothing. From the project's root:

    python -m experiments.registered_stacks.run ../shared/data/gt-stacks/s256 \\
        ../shared/data/gt-stacks/s512 --checkpoint src/vaeedof/release/fusion_release.safetensors --record
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from experiments.record import add_arguments, finish, run_study
from vaeedof import params as params_module
from vaeedof.errors import VaeedofError
from vaeedof.evaluation.baselines import (
    HYBRID,
    OK,
    failed_status,
    fuse_each,
    fusion_methods,
    unavailable_methods,
)
from vaeedof.fusion.loader import load_fuser
from vaeedof.images import as_float, psnr, read_image
from vaeedof.nets.hybrid import HybridSettings
from vaeedof.render.layout import GT_FILE

CSV = Path(__file__).parent / "registered_stacks.csv"
# The hybrid output with other mix settings (fusion.hybrid_* over the model's), by label.
VARIANTS = {
    "hybrid, no smoothing (before)": {"hybrid_smoothing": 0.0},
    "hybrid, smoothing sigma 2": {"hybrid_smoothing": 2.0},
    "hybrid, smoothing sigma 8": {"hybrid_smoothing": 8.0},
    "hybrid, no reblur term": {"hybrid_reblur_weight": 0.0},
    "hybrid, no reblur term, no smoothing": {"hybrid_reblur_weight": 0.0, "hybrid_smoothing": 0.0},
}


def stacks_in(folder: Path) -> list[tuple[str, list[Path], Path]]:
    """(name, frames near to far, ground truth) of every stack folder in `folder`."""
    if not folder.is_dir():
        raise VaeedofError(f"{folder}: not a folder")
    found = []
    for stack in sorted(p for p in folder.iterdir() if p.is_dir()):
        frames = sorted(stack.glob("focus_*.png"), key=lambda p: int(p.stem.split("_")[1]))
        if frames and (stack / GT_FILE).exists():
            found.append((stack.name, frames, stack / GT_FILE))
    if not found:
        raise VaeedofError(f"{folder}: no stack folders with focus_<k>.png and {GT_FILE}")
    return found


def set_label(folder: Path) -> str:
    """A set's name in the table: its folder and the one above (gt-stacks/s256, mattingmfif/test)."""
    return f"{folder.resolve().parent.name}/{folder.resolve().name}"


def with_settings(fuser, overrides: dict):
    """The hybrid output of `fuser` with mix settings `overrides` over the model's."""
    settings = HybridSettings.of(fuser.hybrid.as_dict() | overrides)

    def fuse(stack):
        default, fuser.hybrid = fuser.hybrid, settings
        try:
            return fuser.fuse(stack, mode=HYBRID)
        finally:
            fuser.hybrid = default
    return fuse


def registered_table(rows: list[dict], peers: list[str]) -> list[str]:
    """Per set, each method's mean PSNR and SSIM over the stacks it fused (best first), on how many
    it failed, and on how many stacks its PSNR is above the best peer's (rows as strings or numbers)."""
    header = ["set", "method", "stacks", "PSNR", "SSIM", "failed on", "PSNR above the best peer's on"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for label in dict.fromkeys(r["set"] for r in rows):
        lines += _set_lines(label, [r for r in rows if r["set"] == label], peers)
    if rows and peers:
        lines += ["", f"Peers: {', '.join(peers)}; the best peer: the highest mean PSNR on the set."]
    return lines


def _set_lines(label: str, rows: list[dict], peers: list[str]) -> list[str]:
    scored = {m: {r["stack"]: (float(r["psnr"]), float(r["ssim"])) for r in rows
                  if r["method"] == m and r["psnr"] not in (None, "")}
              for m in dict.fromkeys(r["method"] for r in rows)}
    means = {m: np.mean(list(stacks.values()), axis=0) for m, stacks in scored.items() if stacks}
    best = max((p for p in peers if p in means), key=lambda p: means[p][0], default=None)
    lines = []
    for method in sorted(scored, key=lambda m: -means[m][0] if m in means else np.inf):
        mine = scored[method]
        failed = sum(r["method"] == method and r["psnr"] in (None, "") for r in rows)
        scores = "{:.2f} | {:.4f}".format(*means[method]) if mine else "- | -"
        above = "-"
        if best not in (None, method):
            rival = scored[best]
            above = f"{sum(v[0] > rival[s][0] for s, v in mine.items() if s in rival)} of {len(mine)}"
        lines.append(f"| {label} | {method} | {len(mine)} | {scores} | {failed} | {above} |")
    return lines


def main() -> None:
    import pyiqa

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", type=Path, help="folders of stack folders (focus_<k>.png, gt.png)")
    add_arguments(parser, CSV)
    args = parser.parse_args()
    params = params_module.load(args.params)
    sets = [(set_label(folder), stacks_in(folder)) for folder in args.sets]
    fuser = load_fuser(args.checkpoint, mode="hybrid")
    methods = fusion_methods(fuser, params["evaluate"]) | {
        label: with_settings(fuser, overrides) for label, overrides in VARIANTS.items()}
    unavailable = unavailable_methods(params["evaluate"])
    ssim = pyiqa.create_metric("ssim", device="cpu", as_loss=False)
    rows = []
    for label, stacks in sets:
        for name, paths, gt_path in stacks:
            frames = [as_float(read_image(path)) for path in paths]
            gt = as_float(read_image(gt_path))
            results, failed = fuse_each(methods, frames, f"{label}/{name}")
            for method, image in results.items():
                image = torch.round(image.float().clamp(0, 1) * 255) / 255  # as `vaeedof fuse` writes it
                rows.append({"set": label, "stack": name, "frames": len(frames), "method": method,
                             "psnr": round(psnr(image, gt), 3),
                             "ssim": round(float(ssim(image[None], gt[None])), 4), "status": OK})
            rows += [{"set": label, "stack": name, "frames": len(frames), "method": method, "psnr": None,
                      "ssim": None, "status": failed_status(reason)} for method, reason in failed.items()]
    peers = [p for p in params["evaluate"]["peers"] if p not in unavailable]
    notes = [f"- {name}: not run, {reason}" for name, reason in unavailable.items()]
    table = "\n".join(registered_table(rows, peers) + notes) + "\n"
    finish("registered-stacks", table, rows, CSV, args.record)


if __name__ == "__main__":
    run_study(main, "registered_stacks")
