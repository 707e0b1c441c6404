"""The training state and what it leaves: the EMA of the weights (the paper infers with it),
step-stamped checkpoints of the whole state for automatic resume, the run key that says which
run a checkpoint belongs to, and the export of the EMA weights for inference.

Checkpoints are written atomically, the last few kept, and loaded with weights_only=True: a
checkpoint is data, and a pickle that tries to run code is refused, never executed. The EMA decay
warms up as min(decay, (1 + step) / (10 + step)) so early averages are not dominated by the
random initialisation. The run key covers everything that changes what is learned except
`train.steps`, so raising the steps continues a finished run.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import torch
from torch import nn

from .. import atomic, stages
from ..errors import VaeedofError
from ..hashing import sha256_file, sha256_json
from ..logs import get_logger
from ..nets.hybrid import HybridSettings

# ---------------------------------------------------------------------------------------------
# EMA
# ---------------------------------------------------------------------------------------------

def ema_decay(step: int, decay: float) -> float:
    return min(decay, (1.0 + step) / (10.0 + step))


def make_ema(model: nn.Module) -> nn.Module:
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    ema.eval()
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, step: int, decay: float) -> float:
    """ema <- d * ema + (1 - d) * model, in place; returns the decay d used."""
    d = ema_decay(step, decay)
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        ema_param.mul_(d).add_(param.detach(), alpha=1.0 - d)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)
    return d


# ---------------------------------------------------------------------------------------------
# Checkpoint files
# ---------------------------------------------------------------------------------------------

_NAME = re.compile(r"^step_(\d{8})\.pt$")


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step_{step:08d}.pt"


def save_checkpoint(directory: str | os.PathLike, step: int, state: dict, keep: int) -> Path:
    directory = Path(directory)
    target = checkpoint_path(directory, step)
    with atomic.atomic_path(target, suffix=".pt") as tmp:
        torch.save(state, tmp)
    for old in list_steps(directory)[:-keep] if keep > 0 else []:
        checkpoint_path(directory, old).unlink(missing_ok=True)
    return target


def list_steps(directory: str | os.PathLike) -> list[int]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name)))


def load_checkpoint(path: str | os.PathLike) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated, or a pickle with code
        raise VaeedofError(f"{path}: not a loadable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise VaeedofError(f"{path}: not a training checkpoint (missing step/model)")
    return state


def latest_checkpoint(directory: str | os.PathLike) -> dict | None:
    """The newest checkpoint that loads; broken newer ones are reported and skipped."""
    for step in reversed(list_steps(directory)):
        path = checkpoint_path(Path(directory), step)
        try:
            return load_checkpoint(path)
        except VaeedofError as exc:
            get_logger().warning("skipping %s", exc)
    return None


# ---------------------------------------------------------------------------------------------
# The run a training belongs to, and its whole state
# ---------------------------------------------------------------------------------------------

# Keys that do not change what is learned; any other change starts a fresh run.
_RUNTIME_KEYS = ("steps", "checkpoint_every", "keep_checkpoints", "val_every", "log_every")


def run_key(params: dict, latent_identity: dict) -> str:
    """The parameters the train stage reads (vaeedof.stages), less the runtime keys, and the
    latents' identity."""
    learned = stages.values("train", params)
    learned["train"] = {k: v for k, v in learned["train"].items() if k not in _RUNTIME_KEYS}
    return sha256_json({**learned, "latents": latent_identity})[:12]


def restore_state(ckpt_dir: Path, model, ema, optimizer, scheduler
                  ) -> tuple[int, str | None, dict] | None:
    """Load the newest loadable checkpoint into the given objects: (step, MLflow run id, the
    metrics logged so far), or None when there is none (a fresh run)."""
    state = latest_checkpoint(ckpt_dir)
    if state is None:
        return None
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state.get("mlflow_run_id"), json.loads(state.get("metrics_json", "{}"))


def save_state(ckpt_dir: Path, step: int, model, ema, optimizer, scheduler, run_id: str | None,
         metrics: dict, keep: int) -> Path:
    return save_checkpoint(ckpt_dir, step, {
        "step": step, "model": model.state_dict(), "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(), "mlflow_run_id": run_id,
        "metrics_json": json.dumps(metrics, sort_keys=True),
    }, keep)


# ---------------------------------------------------------------------------------------------
# Export for inference
# ---------------------------------------------------------------------------------------------

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
