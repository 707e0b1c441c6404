"""`vaeedof readme`: the figures of README.md and docs/ regenerated from committed files, never
typed by hand. Each generated block sits between `<!-- reports:NAME -->` and
`<!-- /reports:NAME -->` and is the table `results/NAME.csv` holds (vaeedof.evaluation.results),
or the release model's card, or the alignment decisions beside docs/alignment.md; `--check` fails
when one is stale. `--collect` first turns what the pipeline and the studies wrote under
`reports/` and `benchmarks/` into `results/` tables, stamped with the command and the commit.

Training is bit-identical on one machine, not across machines (float summation order differs),
so the figures are those of the run whose reports were collected."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
from pathlib import Path

from .. import atomic
from ..errors import VaeedofError
from . import results
from .baselines import CEILING, HYBRID, LATENT
from .scores import table_markdown

BLOCK = re.compile(r"(<!-- reports:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /reports:(?P=name) -->)", re.S)


class MissingReport(VaeedofError):
    """A figure's reports are not here (not made on this machine): `--collect` keeps its table."""


def _rows(path: Path, maker: str = "the evaluation: snakemake --cores all") -> list[dict]:
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    except FileNotFoundError:
        raise MissingReport(f"{path}: not found (run {maker} first)") from None


def _metrics(reports: Path) -> dict:
    path = reports / "metrics.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingReport(f"{path}: not found (run the evaluation first: snakemake --cores all)") from None


def table_block(reports: Path) -> str:
    return table_markdown(_metrics(reports))


def per_scene_block(reports: Path) -> str:
    """Hybrid output versus the VAE ceiling scene by scene: means hide where each one wins."""
    rows = _rows(reports / "per_image.csv")
    by = {(r["scene"], r["method"]): r for r in rows}
    scenes = sorted({r["scene"] for r in rows})
    methods = [m for m in (HYBRID, LATENT, "gff", "laplacian", "enfuse", CEILING)
               if all((s, m) in by for s in scenes)]
    if not scenes or CEILING not in methods:
        return "No per-scene scores to compare.\n"
    psnr = {m: [float(by[(s, m)]["PSNR"]) for s in scenes] for m in methods}
    lines = ["| method | mean PSNR | median PSNR | PSNR of the pooled MSE | scenes above the ceiling |",
             "|---|---|---|---|---|"]
    for method in methods:
        pooled = statistics.mean(float(by[(s, method)]["MSE"]) for s in scenes)
        above = sum(a > c for a, c in zip(psnr[method], psnr[CEILING], strict=True))
        lines.append(f"| {method} | {statistics.mean(psnr[method]):.2f} | "
                     f"{statistics.median(psnr[method]):.2f} | {-10 * math.log10(pooled):.2f} | "
                     f"{'-' if method == CEILING else f'{above}/{len(scenes)}'} |")
    if HYBRID in methods:
        pairs = ", ".join(f"{h:.1f}/{c:.1f}" for h, c in zip(psnr[HYBRID], psnr[CEILING], strict=True))
        lines += ["", f"Per scene, hybrid/ceiling PSNR (dB): {pairs}."]
    return "\n".join(lines) + "\n"


def difficulty_block(reports: Path) -> str:
    """Figure 4 as a table: mean PSNR per difficulty bin and method."""
    rows = _rows(reports / "difficulty.csv")
    bins = sorted({int(r["bin"]) for r in rows})
    methods = sorted({r["method"] for r in rows})
    cell = {(int(r["bin"]), r["method"]): r for r in rows}
    header = "| method | " + " | ".join(f"bin {b} ({cell_difficulty(cell, b)})" for b in bins) + " |"
    lines = [header, "|---|" + "---|" * len(bins)]
    for method in methods:
        values = [f"{float(cell[(b, method)]['psnr']):.1f}" if (b, method) in cell else "-" for b in bins]
        lines.append(f"| {method} | " + " | ".join(values) + " |")
    patches = {int(r["patches"]) for r in rows}
    lines += ["", f"PSNR (dB) per bin; patches per bin and method: {', '.join(map(str, sorted(patches)))}."]
    return "\n".join(lines) + "\n"


def cell_difficulty(cell: dict, index: int) -> str:
    return next(f"{float(r['difficulty']):.1f}" for (b, _), r in cell.items() if b == index)


def throughput_block(reports: Path) -> str:
    """Figure 6 as a table; a method that failed or could not run shows why, below the table."""
    rows = _rows(reports / "throughput.csv")
    counts = sorted({int(r["inputs"]) for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(int(r["inputs"]), r["method"]): r for r in rows}
    lines = ["| method | " + " | ".join(f"{n} inputs" for n in counts) + " |",
             "|---|" + "---|" * len(counts)]
    reasons = {}
    for method in methods:
        cells = []
        for count in counts:
            row = by.get((count, method), {})
            if row.get("images_per_s"):
                cells.append(f"{float(row['images_per_s']):.3g}")
            else:
                status = row.get("status") or "not measured"
                cells.append(status.split(":")[0])
                reasons.setdefault(method, status)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    device = rows[0].get("device", "?") if rows else "?"
    notes = "".join(f"\n- {method}: {reason}" for method, reason in reasons.items())
    return "\n".join(lines) + f"\n\nFused images per second on `{device}`; peers and external commands " \
        f"are timed as whole commands (process start included).{notes}\n"


def timings_block(benchmarks: Path) -> str:
    """Seconds per stage, summed over its jobs (Snakemake's benchmark files)."""
    totals: dict[str, tuple[float, int]] = {}
    for path in sorted(benchmarks.rglob("*.tsv")):
        stage = path.relative_to(benchmarks).parts[0]
        seconds = sum(float(r["s"]) for r in csv.DictReader(open(path), delimiter="\t"))
        total, jobs = totals.get(stage, (0.0, 0))
        totals[stage] = (total + seconds, jobs + 1)
    if not totals:
        raise MissingReport(f"{benchmarks}: no benchmark files (run the pipeline first)")
    lines = ["| stage | jobs | seconds |", "|---|---|---|"]
    lines += [f"| {stage} | {jobs} | {total:.0f} |" for stage, (total, jobs) in totals.items()]
    return "\n".join(lines) + "\n"


def handheld_block(reports: Path) -> str:
    """Registered versus hand-held (aligned) test stacks, per method."""
    registered, handheld = _metrics(reports), _metrics(reports / "handheld")
    lines = ["| method | PSNR registered | PSNR hand-held, aligned | difference | SSIM registered | "
             "SSIM hand-held |", "|---|---|---|---|---|---|"]
    for method, scores in handheld["methods"].items():
        base = registered["methods"].get(method, {})
        if "PSNR" in scores and "PSNR" in base:
            lines.append(f"| {method} | {base['PSNR']:.2f} | {scores['PSNR']:.2f} | "
                         f"{scores['PSNR'] - base['PSNR']:+.2f} | {base.get('SSIM', float('nan')):.4f} | "
                         f"{scores.get('SSIM', float('nan')):.4f} |")
    return "\n".join(lines) + f"\n\n{handheld['scenes']} scenes, alignment `{handheld.get('align', '?')}`.\n"


def release_block() -> str:
    """The release model's scores, from the model card shipped beside its weights (written by
    `vaeedof release` from the release run's reports)."""
    from ..fusion.loader import release_weights
    from .release import CARD

    card = release_weights().parent / CARD
    if not card.exists():
        raise VaeedofError(f"{card}: no release model card (vaeedof release)")
    text = card.read_text()
    body = text[text.index("## Photographic test split"):text.index("Regenerate:")]
    return body.replace("## ", "#### ").rstrip() + "\n"


def align_decisions_block(docs: Path) -> str:
    """What `--align auto` decided on stacks whose motion is known (`experiments/handheld/align_decisions.py`
    writes the CSV beside the document), and the thresholds it decided by."""
    from ..fusion import evidence

    rows = _rows(docs / "alignment-decisions.csv", "python -m experiments.handheld.align_decisions DATA")
    lines = ["| set | motion | stacks | warped by `auto` | apparent motion, largest px | motion in blocks "
             "sharp in both, largest px | aligner's corner error px, median (max) |",
             "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(row["set"] for row in rows):
        group = [row for row in rows if row["set"] == name]
        warped = sum(int(row["warped"]) for row in group)
        qualifying = [float(row["evidence_px"]) for row in group
                      if int(row["sharp_blocks"]) >= evidence.MIN_BLOCKS
                      and float(row["agreeing"]) >= evidence.AGREEING_SHARE]
        errors = [float(row["error_px"]) for row in group if row["error_px"] not in ("", "nan")]
        error = f"{statistics.median(errors):.3f} ({max(errors):.3f})" if errors else "-"
        lines.append(f"| {name} | {group[0]['kind']} | {len(group)} | {warped} | "
                     f"{max(float(row['apparent_px']) for row in group):.2f} | "
                     f"{f'{max(qualifying):.2f}' if qualifying else '-'} | {error} |")
    lines += ["", f"Thresholds (`vaeedof.fusion.evidence`): a block counts when both frames hold "
              f"{evidence.SHARP_SHARE:.0%} of the stack's best detail there; a pair shows motion with "
              f"{evidence.MIN_BLOCKS} such blocks or more, {evidence.AGREEING_SHARE:.0%} of them within "
              f"{evidence.AGREEING_PX} px of one similarity, which moves a corner or the centre by "
              f"{evidence.EVIDENT_MOTION_PX} px or more."]
    return "\n".join(lines) + "\n"


# The scales whose sizes the storage table gives: overlays on params.yaml (docs/workflow.md).
SCALES = {"ci": ("config/ci.yaml",), "demo": (), "paper": ("config/paper.yaml",)}


def _grows_with(path: str, params: dict) -> float:
    """How much of what makes output `path` big a scale has (pixels rendered, patch pixels, model
    width): sizes at another scale are estimated in proportion. 1: small or fixed."""
    scenes, render, patches, assets = params["scenes"], params["render"], params["patches"], params["assets"]

    def side(split: str) -> int:
        crop = render["test_crop"] if split == "test" and render["test_crop"] else render["crop"]
        return crop or render["resolution"]

    split = path.rstrip("/").rsplit("/", 1)[-1]
    if path.startswith(("data/mattingmfif/", "data/handheld/")) and split in scenes:
        return scenes[split] * side(split) ** 2
    if path.startswith("data/fused"):
        return scenes["test"] * side("test") ** 2
    if path in ("data/patches", "data/latents"):
        return scenes["train"] * patches["per_scene"] * patches["size"] ** 2
    if path == "data/scenes":
        return scenes["train"] + scenes["test"]
    if path == "resources/assets":
        procedural = assets["procedural"]
        return (sum(procedural[k] for k in ("subjects_train", "subjects_test", "backgrounds_train",
                                            "backgrounds_test")) * procedural["subject_size"] ** 2
                + procedural["hdris"] * procedural["hdri_width"] ** 2)
    if path.startswith("models/fusion_ema.safetensors"):
        return sum(width**2 for width in params["model"]["widths"])
    return 1.0


def _size(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def storage_block(lock: Path = Path("dvc.lock")) -> str:
    """What `dvc push` stores, per output: measured by the run dvc.lock records (its sizes and its
    parameters), and estimated for each scale in proportion to `_grows_with`."""
    import yaml

    from .. import params as params_mod

    try:
        stages = yaml.safe_load(lock.read_text())["stages"]
        if not isinstance(stages, dict):
            raise TypeError
    except FileNotFoundError:
        raise VaeedofError(f"{lock}: not found (a pipeline run writes it)") from None
    except (yaml.YAMLError, TypeError, KeyError):
        raise VaeedofError(f"{lock}: not a dvc.lock (no stages); restore it from git") from None
    run = params_mod.with_defaults({dotted: value for stage in stages.values()
                                    for values in stage.get("params", {}).values()
                                    for dotted, value in values.items()})
    scales = {name: params_mod.merged("params.yaml", list(overlays)) for name, overlays in SCALES.items()}
    outputs = {}  # path -> (stage, files, bytes); the small reports as one row
    for name, stage in stages.items():
        for out in stage.get("outs", []):
            path = "reports/" if out["path"].startswith("reports/") else out["path"]
            if "size" in out and path != params_mod.MERGED:
                _, files, size = outputs.get(path, ("", 0, 0))
                stage_name = "evaluate, ..." if path == "reports/" else name
                outputs[path] = (stage_name, files + out.get("nfiles", 1), size + out["size"])
    lines = ["| output | stage | files | size in dvc.lock | " + " | ".join(SCALES) + " |",
             "|---" * (4 + len(SCALES)) + "|"]
    totals = {scale: [0.0, True] for scale in SCALES}  # bytes, measured (not estimated)
    for path, (stage, files, size) in outputs.items():
        cells = []
        for scale, values in scales.items():
            exact = _grows_with(path, values) == _grows_with(path, run)
            estimate = size * _grows_with(path, values) / _grows_with(path, run)
            totals[scale][0] += estimate
            totals[scale][1] &= exact
            cells.append(_size(estimate) if exact else f"~{_size(estimate)}")
        lines.append(f"| `{path}` | {stage} | {files} | {_size(size)} | " + " | ".join(cells) + " |")
    all_cells = [("" if exact else "~") + _size(total) for total, exact in totals.values()]
    measured = _size(sum(o[2] for o in outputs.values()))
    lines.append(f"| all | | | {measured} | " + " | ".join(all_cells) + " |")
    return "\n".join(lines) + (
        f"\n\nMeasured: the run dvc.lock records ({run['scenes']['train']} train and "
        f"{run['scenes']['test']} test scenes). `~`: estimated in proportion to pixels rendered, patch "
        "pixels or model width at that scale; PNG compression and the assets' sources differ, so the "
        "paper's column is an order of magnitude, not a budget.\n")


PIPELINE = "snakemake --cores all"
# Figure -> (what makes its table from reports/ and benchmarks/, the command that wrote those).
COLLECTORS = {
    "table": (lambda r, b: table_block(r), PIPELINE),
    "per-scene": (lambda r, b: per_scene_block(r), PIPELINE),
    "difficulty": (lambda r, b: difficulty_block(r), PIPELINE),
    "throughput": (lambda r, b: throughput_block(r), PIPELINE),
    "handheld": (lambda r, b: handheld_block(r), PIPELINE),
    "timings": (lambda r, b: timings_block(b), PIPELINE),
}


def collect(reports: Path, benchmarks: Path, folder: Path) -> tuple[list[str], list[str]]:
    """Write `results/<figure>.csv` for every figure whose reports exist; return the figures
    collected and those whose reports are missing (left as recorded)."""
    from ..provenance import git_commit

    collected, missing = [], []
    for name, (make, made_by) in COLLECTORS.items():
        try:
            markdown = make(reports, benchmarks)
        except MissingReport:
            missing.append(name)
            continue
        commit = _metrics(reports).get("git_commit") if made_by == PIPELINE and \
            (reports / "metrics.json").exists() else None
        results.record(name, markdown, made_by, commit or git_commit(), folder=folder)
        collected.append(name)
    return collected, missing


def make_block(name: str, results_folder: Path, docs: Path = Path("docs")) -> str:
    """Figure `name` as shown: the release model's card, the alignment decisions beside the docs,
    or the table of `results/<name>.csv` (the pipeline's, collected; a study's, recorded by it)."""
    if name == "release":
        return release_block()
    if name == "align-decisions":
        return align_decisions_block(docs)
    if name == "storage":
        return storage_block()
    return results.block(name, results_folder)


def update(readme: str | os.PathLike, results_folder: str | os.PathLike = results.FOLDER,
           check: bool = False) -> list[str]:
    """Regenerate every marked block; return the names of the blocks that changed. With
    `check`, write nothing and raise when any block is stale."""
    readme = Path(readme)
    text = readme.read_text()
    changed = []

    def replace(match: re.Match) -> str:
        name = match["name"]
        body = make_block(name, Path(results_folder), readme.parent)
        if body != match["body"]:
            changed.append(name)
        return match.group(1) + body + match.group(4)

    new = BLOCK.sub(replace, text)
    if check and changed:
        raise VaeedofError(f"{readme}: stale figures in block(s) {', '.join(changed)}; "
                           "run `vaeedof readme` to regenerate them from results/")
    if not check and new != text:
        atomic.write_text(readme, new)
    return changed
