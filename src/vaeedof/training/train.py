"""Training the Fusion U-Net on cached latents: DDP (gloo on CPU, NCCL on CUDA, bf16 autocast on
GPU), AdamW with warm-up and cosine decay, gradient clipping, EMA, step-stamped checkpoints with
automatic and exact resume, validation through the frozen decoder, MLflow on rank 0.

Loss (ours: the paper does not state its loss): L1 between the predicted and the ground-truth
latent, plus `train.hybrid_weight` x L1 between the hybrid output (`vaeedof.nets.hybrid`: the
input pixels mixed by the predicted weights, steered by the decoded fusion) and the ground-truth pixels
of the patch. The decoded image is detached: the pixel loss teaches the mix (and, through the
shared trunk, the features it reads), the latent loss the fusion.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch.nn.parallel import DistributedDataParallel

from .. import atomic, stages
from ..errors import VaeedofError
from ..logs import get_logger, progress
from ..nets.hybrid import HybridSettings, compose
from ..nets.unet import build_model
from ..provenance import git_commit
from ..tracking import Tracker
from . import distributed
from .augment import augment
from .batches import BatchStream, latent_batch, pixel_batch, step_generator
from .latents import Shards
from .state import (
    checkpoint_path,
    export,
    list_steps,
    make_ema,
    restore_state,
    run_key,
    save_state,
    update_ema,
)
from .validation import load_val_set, validate


def lr_lambda(cfg: dict):
    warmup, total, floor = cfg["warmup_steps"], cfg["steps"], cfg["min_lr_ratio"]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress_ = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress_))

    return factor


@dataclass
class _Run:
    """Everything one training process holds."""

    params: dict
    runtime: distributed.Runtime
    data: Shards
    ckpt_dir: Path
    out_dir: Path
    batch: int
    model: torch.nn.Module
    ema: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    step: int = 0
    run_id: str | None = None
    metrics: dict = field(default_factory=dict)
    resumed: bool = False

    @property
    def cfg(self) -> dict:
        return self.params["train"]

    def save_checkpoint(self) -> None:
        if self.runtime.is_main:
            save_state(self.ckpt_dir, self.step, self.model, self.ema, self.optimizer, self.scheduler,
                        self.run_id, self.metrics, self.cfg["keep_checkpoints"])
        distributed.barrier(self.runtime)


def _setup(params: dict, latents_dir, out_dir: Path, device: str) -> _Run:
    """Processes, data, model, optimizer; the state of the newest checkpoint when there is one."""
    runtime = distributed.init(device)
    cfg = params["train"]
    data = Shards(latents_dir, "train")
    identity = {k: data.manifest[k] for k in ("vae", "vae_checksums", "patches")}
    ckpt_dir = out_dir / "checkpoints" / run_key(params, identity)
    if cfg["global_batch"] % runtime.world_size:
        raise VaeedofError(f"train.global_batch {cfg['global_batch']} is not divisible by "
                           f"{runtime.world_size} processes")
    batch = cfg["global_batch"] // runtime.world_size
    if runtime.is_main:
        get_logger().info("training on %d process(es), device %s, %d samples per process and step",
                          runtime.world_size, runtime.device.type, batch)
    torch.manual_seed(params["seed"])  # identical initial weights on every rank
    model = build_model(params, data.manifest["latent_channels"]).to(runtime.device)
    ema = make_ema(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                                  betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    run = _Run(params, runtime, data, ckpt_dir, out_dir, batch, model, ema, optimizer, scheduler)
    restored = restore_state(ckpt_dir, model, ema, optimizer, scheduler)
    if restored is not None:
        run.step, run.run_id, run.metrics = restored
        run.resumed = True
        if runtime.is_main:
            get_logger().info("resuming from %s step %d", ckpt_dir, run.step)
    return run


def _start_tracking(run: _Run, track: bool) -> Tracker:
    manifest, params = run.data.manifest, run.params
    tracker = Tracker(track and run.runtime.is_main)
    run.run_id = tracker.start(
        run_name=f"train-{run.ckpt_dir.name}",
        tags={"git_commit": git_commit(), "data_version": manifest["patches"][:12],
              "vae": manifest["vae"], "world_size": str(run.runtime.world_size), "kind": "train"},
        params=stages.values("train", params),
        run_id=run.run_id) or run.run_id
    if run.runtime.is_main and not run.resumed and tracker.enabled:
        params_copy = run.out_dir / "params.used.yaml"
        atomic.write_text(params_copy, yaml.safe_dump(params, sort_keys=True))
        tracker.artifact(params_copy)
    return tracker


def _step_loss(run: _Run, net, vae, stream: BatchStream, train_pixels, hybrid_weight: float):
    """One batch's loss: (total, latent part, pixel part)."""
    params, runtime = run.params, run.runtime
    indices = stream.indices(run.step)
    latents = latent_batch(run.data, indices)
    pixels = pixel_batch(train_pixels, indices) if hybrid_weight > 0 else None
    inputs, target, *pixel_pair = augment(latents, params["model"]["max_inputs"],
                                          step_generator(params["seed"], runtime.rank, run.step),
                                          run.cfg["augment"], run.cfg["input_subset_probability"], pixels)
    inputs, target = inputs.to(runtime.device), target.to(runtime.device)
    with torch.autocast(runtime.device.type, dtype=torch.bfloat16, enabled=runtime.device.type == "cuda"):
        pred, mix = net(inputs, with_mix=True)
    latent_loss = F.l1_loss(pred.float(), target)
    if hybrid_weight <= 0:  # every parameter takes part in each step (DDP expects it)
        zero = latent_loss + 0.0 * (mix.float().mean() + run.model.mix_sharpness)
        return zero, latent_loss, torch.zeros(())
    pixel_inputs, pixel_target = (t.to(runtime.device) for t in pixel_pair)
    # The decoded image is detached: letting the pixel loss through the decoder into the fusion
    # gave the same test PSNR (31.25 vs 31.37 dB) at 1.6x the training time.
    with torch.no_grad():
        decoded = vae.decode(pred.detach().float())
    # The loss scores the mix per pixel, without the selection smoothing: the release model was
    # trained so and the smoothing chosen on it at inference; training through it is unmeasured.
    settings = replace(HybridSettings.of(params["fusion"]), smoothing=0.0)
    mixed = compose(mix.float(), pixel_inputs, decoded, run.model.mix_sharpness, settings)
    pixel_loss = F.l1_loss(mixed, pixel_target)
    return latent_loss + hybrid_weight * pixel_loss, latent_loss, pixel_loss


def _ddp(run: _Run, vae, stream: BatchStream, train_pixels, hybrid_weight: float) -> DistributedDataParallel:
    """The model under DDP with its gradient buckets in their lasting layout. DDP reduces its first
    step in one bucket and re-buckets after it; over more than two processes the sums then group
    differently, so a resumed run (whose first step is a later one) would differ from an
    uninterrupted one in the last bits. One forward and backward of zero loss before any real step
    (RNG and gradients left as they were) makes every real step use the same layout."""
    net = DistributedDataParallel(run.model)
    devices = [run.runtime.device] if run.runtime.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        (0.0 * _step_loss(run, net, vae, stream, train_pixels, hybrid_weight)[0]).backward()
    run.optimizer.zero_grad(set_to_none=True)
    return net


def _optimise(run: _Run, loss: torch.Tensor, tracker: Tracker) -> tuple[float, float]:
    """Backward, clip, step, EMA; stops on a non-finite loss. Returns (global loss, grad norm)."""
    global_loss = distributed.all_reduce_mean(loss.detach(), run.runtime)
    if not torch.isfinite(global_loss):
        last = list_steps(run.ckpt_dir)
        tracker.end("FAILED")
        raise VaeedofError(f"non-finite loss at step {run.step + 1}; stopped, last good checkpoint: "
                           f"{checkpoint_path(run.ckpt_dir, last[-1]) if last else 'none'}")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg["grad_clip"])
    run.optimizer.step()
    run.scheduler.step()
    run.step += 1
    update_ema(run.ema, run.model, run.step, run.cfg["ema_decay"])
    return global_loss.item(), float(grad_norm)


def train(params: dict, latents_dir: str | os.PathLike, patches_dir: str | os.PathLike,
          out_dir: str | os.PathLike = "models", vae_loader=None, device: str = "auto",
          track: bool = True, stop_at: int | None = None) -> Path | None:
    """Train (resuming automatically) and export the EMA weights; returns the weights path on
    rank 0 once training is complete. `stop_at` ends early after that step (for tests and
    interruption), leaving a checkpoint."""
    log = get_logger()
    run = _setup(params, latents_dir, Path(out_dir), device)
    cfg, runtime, max_inputs = run.cfg, run.runtime, params["model"]["max_inputs"]
    stream = BatchStream(len(run.data), runtime, run.batch, params["seed"])
    tracker = _start_tracking(run, track)

    vae = val = val_pixels = train_pixels = None
    hybrid_weight, hybrid = cfg["hybrid_weight"], HybridSettings.of(params["fusion"])
    if hybrid_weight > 0 and vae_loader is None:
        log.warning("no VAE given: the hybrid mix is not trained (train.hybrid_weight ignored)")
        hybrid_weight = 0.0
    if hybrid_weight > 0:
        vae = vae_loader().to(runtime.device)  # every rank decodes its own batch
        train_pixels = Shards(patches_dir, "train")
    splits = run.data.manifest["splits"]
    if (runtime.is_main and splits.get("val", {}).get("count", 0) > 0 and vae_loader is not None
            and cfg["val_every"] > 0):
        vae = vae or vae_loader().to(runtime.device)
        val, val_pixels = load_val_set(latents_dir, patches_dir)

    net = _ddp(run, vae, stream, train_pixels, hybrid_weight) if runtime.world_size > 1 else run.model
    end = cfg["steps"] if stop_at is None else min(stop_at, cfg["steps"])
    bar = progress(total=end, initial=run.step, desc="train") if runtime.is_main else None
    tick, samples = time.perf_counter(), 0
    while run.step < end:
        loss, latent_loss, pixel_loss = _step_loss(run, net, vae, stream, train_pixels, hybrid_weight)
        global_loss, grad_norm = _optimise(run, loss, tracker)
        samples += run.batch * runtime.world_size
        rate = samples / max(time.perf_counter() - tick, 1e-9)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{global_loss:.4f}", samples_s=f"{rate:.0f}")
        if run.step % cfg["log_every"] == 0 or run.step == end:
            logged = {"loss": global_loss, "loss_latent": float(latent_loss.detach()),
                      "loss_pixel": float(pixel_loss.detach()), "lr": run.scheduler.get_last_lr()[0],
                      "grad_norm": grad_norm, "samples_per_s": rate}
            tracker.metrics(logged, run.step)
            run.metrics.update(logged)
            if runtime.is_main:
                log.info("step %d/%d loss %.5f lr %.2e %.1f samples/s", run.step, cfg["steps"],
                         logged["loss"], logged["lr"], rate)
            tick, samples = time.perf_counter(), 0
        if val is not None and (run.step % cfg["val_every"] == 0 or run.step == cfg["steps"]):
            preview = run.out_dir / "previews" / f"val_step_{run.step:08d}.png"
            scores = validate(run.ema, vae, val, val_pixels, max_inputs, runtime.device, preview, hybrid)
            tracker.metrics(scores, run.step)
            tracker.artifact(preview, "previews")
            log.info("step %d validation: %s", run.step, {k: round(v, 2) for k, v in scores.items()})
            run.metrics.update(scores)
        if run.step % cfg["checkpoint_every"] == 0 or run.step == end:
            tracker.flush()
            run.save_checkpoint()
    if bar is not None:
        bar.close()
    return _finish(run, tracker)


def _finish(run: _Run, tracker: Tracker) -> Path | None:
    weights = None
    if run.step >= run.cfg["steps"] and run.runtime.is_main:
        weights = export(run.ema, run.params, run.data.manifest, run.out_dir, run.step, run.run_id,
                         run.metrics)
        tracker.artifact(weights)
        tracker.artifact(run.out_dir / "fusion_ema.json")
        get_logger().info("exported %s", weights)
    tracker.end()
    distributed.barrier(run.runtime)
    distributed.cleanup()
    return weights
