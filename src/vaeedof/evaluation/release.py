"""`vaeedof release`: a trained model as the release model that ships inside the package.

Writes `fusion_release.safetensors` (the EMA weights in fp16: half the size, and the U-Net runs in
fp32 or bf16 anyway), the JSON beside it, and MODEL_CARD.md: the data, the parameters, steps and
wall time, the scores on the photographic test split and on real stacks, the sha256.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .. import atomic
from ..errors import VaeedofError
from ..hashing import sha256_file
from ..nets.hybrid import HybridSettings
from .baselines import CEILING, HYBRID, LATENT, LATENT_ORACLE

CARD = "MODEL_CARD.md"
TABLE_METRICS = ("PSNR", "SSIM", "MS-SSIM", "HaarPSI")


def _convert(weights: Path, dest: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    state = {key: value.to(torch.float16) if value.is_floating_point() else value
             for key, value in load_file(str(weights)).items()}
    with atomic.atomic_path(dest, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "vaeedof-fusion-unet-1", "dtype": "float16"})


def _train_wall_s(benchmark: Path) -> float | None:
    if not benchmark.exists():
        return None
    with benchmark.open() as handle:
        return float(next(csv.DictReader(handle, delimiter="\t"))["s"])


def _table(metrics: dict) -> list[str]:
    lines = ["| method | " + " | ".join(TABLE_METRICS) + " |", "|---" * (len(TABLE_METRICS) + 1) + "|"]
    for method, scores in sorted(metrics["methods"].items()):
        cells = ["n/a" if m not in scores else f"{scores[m]:.4f}" if m != "PSNR" else f"{scores[m]:.2f}"
                 for m in TABLE_METRICS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _real_means(path: Path | None) -> list[dict]:
    """Per collection and method, the mean scores of reports/real_metrics.csv (none: no file)."""
    if path is None or not path.exists():
        return []
    with path.open() as handle:
        # Methods that fused no stack of a collection (their status says why) have no means.
        return [row for row in csv.DictReader(handle) if row["stack"] == "mean" and row["qabf"]]


def _real_table(means: list[dict]) -> list[str]:
    lines = ["| collection | method | stacks | Q^AB/F | Q_Y | NMI |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['collection']} | {r['method']} | {r['inputs']} | {float(r['qabf']):.4f} | "
              f"{float(r['qy']):.4f} | {float(r['nmi']):.4f} |" for r in means]
    return lines


def _checks(metrics: dict, means: list[dict], peers: list[str]) -> list[str]:
    """The must-holds, measured: hybrid against GFF, the Laplacian pyramid and every peer, latent
    mode against the VAE ceiling, hybrid's Q^AB/F against GFF's, enfuse's and every peer's."""
    methods = metrics["methods"]
    lines = []
    hybrid = methods.get(HYBRID)
    for rival in ("gff", "laplacian", *peers):
        if hybrid and rival in methods:
            lines.append(f"- hybrid vs {rival}: PSNR {hybrid['PSNR'] - methods[rival]['PSNR']:+.2f} dB, "
                         f"SSIM {hybrid['SSIM'] - methods[rival]['SSIM']:+.4f}")
    if LATENT in methods and CEILING in methods:
        gap = methods[LATENT]["PSNR"] - methods[CEILING]["PSNR"]
        lines.append(f"- latent mode vs the VAE ceiling: PSNR {gap:+.2f} dB")
    if LATENT in methods and LATENT_ORACLE in methods:
        gap = methods[LATENT]["PSNR"] - methods[LATENT_ORACLE]["PSNR"]
        lines.append(f"- latent mode vs the latent selection oracle: PSNR {gap:+.2f} dB "
                     f"(that oracle vs the ceiling: "
                     f"{methods[LATENT_ORACLE]['PSNR'] - methods[CEILING]['PSNR']:+.2f} dB)")
    if means:
        score = {(r["collection"], r["method"]): float(r["qabf"]) for r in means}
        for collection in sorted({r["collection"] for r in means}):
            mine = score.get((collection, HYBRID))
            rivals = [f"{m} {mine - score[(collection, m)]:+.4f}" for m in ("gff", "enfuse", *peers)
                      if mine is not None and (collection, m) in score]
            if rivals:
                lines.append(f"- {collection}: hybrid Q^AB/F vs " + ", ".join(rivals))
    return lines


def card_text(info: dict, params: dict, metrics: dict, real_metrics: Path | None,
              wall_s: float | None) -> str:
    means = _real_means(real_metrics)
    photos = params["assets"]["photographic"]
    lines = [
        "# VAEEDOF release model", "",
        "Fusion U-Net (latent mode: the paper's frozen VAE + U-Net) with the hybrid mix head, "
        f"for the frozen {info['vae']} VAE. Used by `vaeedof fuse` when no `--checkpoint` is given "
        "and the working folder has no pipeline-trained model.", "",
        "## Weights", "",
        f"- `fusion_release.safetensors`: fp16, sha256 `{info['weights_sha256']}`",
        f"- architecture: widths {info['widths']}, {info['attention_heads']} attention heads, "
        f"up to {info['max_inputs']} inputs per pass, {info['latent_channels']} latent channels",
        f"- VAE checksums: encoder `{info['vae_checksums']['encoder']}`, decoder "
        f"`{info['vae_checksums']['decoder']}`", "",
        "## Data", "",
        f"- MattingMFIF-style scenes rendered by this project (Blender Cycles, {params['render']['samples']}"
        f" spp, denoised): {params['scenes']['train']} train scenes, {params['scenes']['test']} test scenes, "
        f"{params['scenes']['planes']} subject planes + background, crops of {params['render']['crop']} px "
        f"(test {params['render']['test_crop']} px) of {params['render']['resolution']} px frames",
        f"- subjects: `{params['assets']['subjects']}`, backgrounds: `{params['assets']['backgrounds']}`, "
        f"lighting: `{params['assets']['hdris']}` (the registered photographs, Unsplash License, "
        "and Poly Haven HDRIs, CC0; every scene records its credits)",
        f"- held-out photographs (test split only): {', '.join(photos['test_photos'])}", "",
        "## Training", "",
        f"- {info['steps']} steps, global batch {params['train']['global_batch']}, patches of "
        f"{params['patches']['size']} px ({params['patches']['per_scene']} per scene), lr "
        f"{params['train']['lr']}, EMA {params['train']['ema_decay']}, hybrid weight "
        f"{params['train']['hybrid_weight']}, seed {params['seed']}",
        f"- wall time: {wall_s / 60:.0f} min (CPU, 2 cores)" if wall_s else "- wall time: not recorded",
        f"- MLflow run: `{info.get('mlflow_run_id')}`; training parameter hash `{info['train_params_hash']}`",
        "", "## Photographic test split (ground truth)", "",
        f"{metrics['scenes']} scenes from held-out photographs; `latent` is the paper's output "
        "(every pixel decoded), `hybrid` the default output, `vae_ceiling` the ground truth through the VAE, "
        "`latent_selection_oracle` per latent position the input latent nearest the ground truth's.", "",
        *_table(metrics), "",
        "Differences (positive: the release model is ahead):", "",
        *_checks(metrics, means, params["evaluate"]["peers"]), "",
    ]
    if means:
        lines += ["## Real stacks without ground truth (no-reference metrics)", "", *_real_table(means), ""]
    lines += ["Regenerate: `snakemake --cores all --configfile config/release.yaml`, then "
              "`vaeedof release --weights models/fusion_ema.safetensors --reports reports`.", ""]
    return "\n".join(lines)


def export_release(weights: Path, reports: Path, params: dict, out_dir: Path,
                   benchmark: Path = Path("benchmarks/train/train.tsv")) -> Path:
    """fp16 weights + JSON + model card under out_dir; return the weights' path."""
    info_path = weights.with_suffix(".json")
    metrics_path = reports / "metrics.json"
    for path in (weights, info_path, metrics_path):
        if not path.exists():
            raise VaeedofError(f"{path}: missing (train and evaluate the release scale first)")
    dest = out_dir / "fusion_release.safetensors"
    info = json.loads(info_path.read_text())
    # Re-scoring the shipped release (new reports, same weights) keeps its weights and the
    # records of the training behind them: source checksum and wall time.
    if not (dest.exists() and dest.resolve() == weights.resolve()):
        _convert(weights, dest)
    info.setdefault("source_weights_sha256", sha256_file(weights))
    wall_s = _train_wall_s(benchmark) or info.get("train_wall_s")
    # The hybrid settings the card's metrics were measured with (those of the parameters given).
    info.update(weights_sha256=sha256_file(dest), dtype="float16", train_wall_s=wall_s,
                **HybridSettings.of(params["fusion"]).as_dict())
    atomic.write_json(dest.with_suffix(".json"), info)
    metrics = json.loads(metrics_path.read_text())
    text = card_text(info, params, metrics, reports / "real_metrics.csv", wall_s)
    atomic.write_text(out_dir / CARD, text)
    return dest
