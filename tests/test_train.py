"""Training on synthetic cached latents: overfitting, exact resume, DDP, MLflow, NaN."""

import copy
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from vaeedof.errors import VaeedofError
from vaeedof.training.state import checkpoint_path, list_steps
from vaeedof.training.train import train

from .conftest import tiny_params
from .synthetic import make_latent_set, random_vae

pytestmark = pytest.mark.slow


def _params(**train):
    params = tiny_params()
    params["model"].update(max_inputs=3, widths=[16, 32, 64], attention_heads=2)
    settings = dict(steps=20, global_batch=4, lr=1e-3, warmup_steps=2, checkpoint_every=5,
                    keep_checkpoints=2, val_every=0, log_every=5,
                    hybrid_weight=0.0)  # synthetic latents: no VAE decodes them
    params["train"].update(settings | train)
    params["patches"].update(size=32)
    return params


@pytest.fixture(scope="module")
def latent_set(tmp_path_factory):
    return make_latent_set(tmp_path_factory.mktemp("latents"))


def _ema_weights(out):
    from safetensors.torch import load_file

    return load_file(str(out / "fusion_ema.safetensors"))


def test_overfit_loss_falls_tenfold():
    """A handful of samples: each input holds the target in one band and noise elsewhere."""
    from vaeedof.nets.unet import build_model

    params = _params()
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(4, 16, 8, 8, generator=generator)
    inputs = []
    for k in range(3):
        noisy = target + torch.randn(target.shape, generator=generator)
        noisy[..., :, 3 * k:3 * k + 3] = target[..., :, 3 * k:3 * k + 3]
        inputs.append(noisy)
    inputs = torch.stack(inputs, dim=1)
    torch.manual_seed(0)
    model = build_model(params, 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for _ in range(300):
        loss = torch.nn.functional.l1_loss(model(inputs), target)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 10, (first, loss.item())


def test_resume_is_exact(tmp_path, latent_set):
    patches, cache = latent_set
    params = _params()
    train(params, cache, patches, tmp_path / "straight", track=False)
    interrupted = tmp_path / "resumed"
    assert train(params, cache, patches, interrupted, track=False, stop_at=10) is None
    assert not (interrupted / "fusion_ema.safetensors").exists()
    train(params, cache, patches, interrupted, track=False)
    straight, resumed = _ema_weights(tmp_path / "straight"), _ema_weights(interrupted)
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    run_dirs = list((interrupted / "checkpoints").iterdir())
    assert len(run_dirs) == 1 and list_steps(run_dirs[0]) == [15, 20]  # keep 2


def test_export_describes_the_model(tmp_path, latent_set):
    import json

    patches, cache = latent_set
    train(_params(steps=5), cache, patches, tmp_path, track=False)
    info = json.loads((tmp_path / "fusion_ema.json").read_text())
    assert info["vae"] == "taef2" and info["max_inputs"] == 3 and info["steps"] == 5
    assert info["latent_channels"] == 16 and info["patch_size"] == 32
    assert len(info["train_params_hash"]) == 64


def test_validation_and_mlflow_run(tmp_path, latent_set, monkeypatch):
    import mlflow

    patches, cache = latent_set
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    params = _params(steps=10, val_every=5)
    train(params, cache, patches, tmp_path / "m", vae_loader=random_vae, stop_at=5)
    train(params, cache, patches, tmp_path / "m", vae_loader=random_vae)
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name("vaeedof")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "a resumed training continues the same run"
    run = runs[0]
    assert run.data.params["train.steps"] == "10"
    assert run.data.tags["git_commit"]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [5, 10]
    assert "val_psnr" in run.data.metrics and "val_psnr_mean_of_inputs" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"fusion_ema.safetensors", "previews", "params.used.yaml"} <= artifacts


def test_nan_loss_stops_with_last_checkpoint_kept(tmp_path, latent_set):
    patches, cache = latent_set
    poisoned = tmp_path / "latents"
    import shutil

    shutil.copytree(cache, poisoned)
    shard = poisoned / "train/shard_00000.npy"
    array = np.load(shard)
    array[:] = np.nan
    np.save(shard, array)
    with pytest.raises(VaeedofError, match="non-finite loss at step 1"):
        train(_params(), poisoned, patches, tmp_path / "m", track=False)
    assert not (tmp_path / "m/fusion_ema.safetensors").exists()


def _train_cli(params, data, tmp_path, out, nproc):
    """`vaeedof train --nproc N` (it re-executes itself under torchrun: what the rule and stage run)."""
    params_file = tmp_path / f"params-{out.name}-{params['train']['steps']}.yaml"
    params_file.write_text(yaml.safe_dump(copy.deepcopy(params)))
    patches, cache = data
    bin_dir = os.path.dirname(sys.executable)
    cmd = [os.path.join(bin_dir, "vaeedof"), "--params", str(params_file), "train", "--nproc", str(nproc),
           "--latents", str(cache), "--patches", str(patches), "--out", str(out),
           "--no-mlflow", "--device", "cpu"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


def test_torchrun_two_process_ddp(tmp_path, latent_set):
    log = _train_cli(_params(steps=6, checkpoint_every=3), latent_set, tmp_path, tmp_path / "m", 2)
    assert (tmp_path / "m/fusion_ema.safetensors").exists()
    assert "step 6/6" in log
    assert "training on 2 process(es)" in log


def test_resume_is_exact_on_four_processes(tmp_path, latent_set):
    """Sums of gradients over more than two processes depend on their grouping: a resumed run's
    first step must be reduced as the uninterrupted run's same step was."""
    params, out = _params(steps=6, checkpoint_every=3), tmp_path / "m"
    _train_cli(params, latent_set, tmp_path, out, 4)
    straight = _ema_weights(out)
    # As if stopped after step 3: its checkpoint is the newest.
    [run_dir] = list((out / "checkpoints").iterdir())
    assert list_steps(run_dir) == [3, 6]
    checkpoint_path(run_dir, 6).unlink()
    (out / "fusion_ema.safetensors").unlink()
    log = _train_cli(params, latent_set, tmp_path, out, 4)
    assert re.search(r"resuming from \S+ step 3", log), log[-2000:]
    resumed = _ema_weights(out)
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
