"""The trained model as inference needs it: `fusion_ema.safetensors` (the EMA weights) and
`fusion_ema.json` beside it (the VAE and its checksums, the architecture, the hybrid settings,
the training parameter hash, the MLflow run, the final metrics)."""

from __future__ import annotations

from pathlib import Path

from .. import atomic, stages
from ..hashing import sha256_file, sha256_json
from ..nets.hybrid import HybridSettings


def export(ema, params: dict, latent_manifest: dict, out_dir: Path, step: int, run_id: str | None,
           metrics: dict) -> Path:
    """models/fusion_ema.safetensors + fusion_ema.json: what inference needs."""
    from safetensors.torch import save_file

    weights = out_dir / "fusion_ema.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in ema.state_dict().items()}
    with atomic.atomic_path(weights, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "vaeedof-fusion-unet-1"})
    info = {
        "format": 1,
        "vae": params["vae"]["name"],
        "vae_checksums": latent_manifest["vae_checksums"],
        "latent_channels": latent_manifest["latent_channels"],
        "max_inputs": params["model"]["max_inputs"],
        "widths": params["model"]["widths"],
        "attention_heads": params["model"]["attention_heads"],
        "patch_size": params["patches"]["size"],
        **HybridSettings.of(params["fusion"]).as_dict(),
        "hybrid_trained": params["train"]["hybrid_weight"] > 0,
        "train_params_hash": sha256_json(stages.values("train", params)),
        "steps": step,
        "mlflow_run_id": run_id,
        "weights_sha256": sha256_file(weights),
        "final_metrics": metrics,
    }
    atomic.write_json(out_dir / "fusion_ema.json", info)
    return weights
