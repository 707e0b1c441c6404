"""Which run a training belongs to and where it stands: the run key (everything that changes
what is learned, except `train.steps`, so raising the steps continues a finished run), and the
full training state saved to and restored from step-stamped checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import stages
from ..hashing import sha256_json
from . import checkpoints

# Keys that do not change what is learned; any other change starts a fresh run.
_RUNTIME_KEYS = ("steps", "checkpoint_every", "keep_checkpoints", "val_every", "log_every")


def run_key(params: dict, latent_identity: dict) -> str:
    """The parameters the train stage reads (vaeedof.stages), less the runtime keys, and the
    latents' identity."""
    learned = stages.values("train", params)
    learned["train"] = {k: v for k, v in learned["train"].items() if k not in _RUNTIME_KEYS}
    return sha256_json({**learned, "latents": latent_identity})[:12]


def restore(ckpt_dir: Path, model, ema, optimizer, scheduler) -> tuple[int, str | None, dict] | None:
    """Load the newest loadable checkpoint into the given objects: (step, MLflow run id, the
    metrics logged so far), or None when there is none (a fresh run)."""
    state = checkpoints.latest(ckpt_dir)
    if state is None:
        return None
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state.get("mlflow_run_id"), json.loads(state.get("metrics_json", "{}"))


def save(ckpt_dir: Path, step: int, model, ema, optimizer, scheduler, run_id: str | None,
         metrics: dict, keep: int) -> Path:
    return checkpoints.save(ckpt_dir, step, {
        "step": step, "model": model.state_dict(), "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(), "mlflow_run_id": run_id,
        "metrics_json": json.dumps(metrics, sort_keys=True),
    }, keep)
