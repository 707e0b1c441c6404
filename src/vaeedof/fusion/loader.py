"""A Fuser from a trained model: the exported `fusion_ema.safetensors`, the JSON beside it, and
the frozen VAE it was trained with (verified through the asset layer).

Which model: `--checkpoint` when given, else a pipeline-trained model in the working folder, else
the release model shipped inside the installed package (so a fresh install fuses anywhere)."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from .. import params as params_mod
from ..devices import resolve_device
from ..errors import VaeedofError
from ..logs import get_logger
from ..nets.hybrid import HybridSettings
from ..nets.unet import FusionUNet
from .engine import DEFAULT_TILE, Fuser

PIPELINE_WEIGHTS = Path("models/fusion_ema.safetensors")
RELEASE_WEIGHTS = "release/fusion_release.safetensors"


def release_weights() -> Path:
    """The release model's weights inside the installed package."""
    return Path(str(resources.files("vaeedof").joinpath(RELEASE_WEIGHTS)))


def choose_checkpoint(given: str | os.PathLike | None) -> tuple[Path, str]:
    """The model to fuse with (see the module doc) and where that choice came from."""
    if given:
        return Path(given), "--checkpoint"
    if PIPELINE_WEIGHTS.exists():
        return PIPELINE_WEIGHTS, "trained by the pipeline in this folder"
    return release_weights(), "the release model"


# Bound on a checkpoint's network (the release model has 7 M parameters): a JSON describing a
# larger one is refused before anything is allocated.
MAX_PARAMETERS = 500_000_000


def checkpoint_schema() -> dict:
    """What a checkpoint's JSON must hold, as JSON Schema: the model and hybrid settings take their
    rules from the parameter schema they were trained under."""
    rules = params_mod.schema()["properties"]
    model, fusion = rules["model"]["properties"], rules["fusion"]["properties"]
    checksum = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    properties = {"latent_channels": {"type": "integer", "minimum": 1, "maximum": 1024},
                  "max_inputs": model["max_inputs"], "widths": model["widths"],
                  "attention_heads": model["attention_heads"], "vae": rules["vae"]["properties"]["name"],
                  "vae_checksums": {"type": "object", "required": ["encoder", "decoder"],
                                    "properties": {"encoder": checksum, "decoder": checksum}}}
    properties |= {key: fusion[key] for key in HybridSettings.KEYS.values()}
    return {"type": "object", "required": ["latent_channels", "max_inputs", "widths", "attention_heads",
                                           "vae", "vae_checksums"], "properties": properties}


def check_info(info, path: Path) -> dict:
    """The checkpoint JSON, its types and ranges checked, or a one-line error naming the file."""
    params_mod.check_schema(info, checkpoint_schema(), str(path))
    if info["widths"][-1] % info["attention_heads"]:
        raise VaeedofError(f"{path}: attention_heads {info['attention_heads']} does not divide the "
                           f"last width {info['widths'][-1]}")
    return info


def read_checkpoint(checkpoint: str | os.PathLike | None) -> tuple[Path, str, dict]:
    """The chosen weights (see choose_checkpoint), where the choice came from, and their JSON,
    checked: nothing is built or loaded yet."""
    weights, source = choose_checkpoint(checkpoint)
    info_path = weights.with_suffix(".json")
    if not weights.exists():
        raise VaeedofError(f"{weights}: no trained model (train one with `snakemake --cores all`, "
                           "or pass --checkpoint)")
    try:
        info = json.loads(info_path.read_text())
    except FileNotFoundError:
        raise VaeedofError(f"{info_path}: missing (exported beside the weights by `vaeedof train`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise VaeedofError(f"{info_path}: not a checkpoint's JSON ({exc})") from None
    return weights, source, check_info(info, info_path)


def _build_model(info: dict, state: dict, weights: Path) -> FusionUNet:
    """The network the JSON describes, built first on torch's meta device (no memory) to bound its
    size and compare its shapes with the weights: a JSON that lies allocates nothing."""
    import torch

    def build() -> FusionUNet:
        return FusionUNet(info["latent_channels"], info["max_inputs"], tuple(info["widths"]),
                          info["attention_heads"])

    info_path = weights.with_suffix(".json")
    try:
        with torch.device("meta"):
            skeleton = build()
    except ValueError as exc:  # e.g. a width the group norm cannot split
        raise VaeedofError(f"{info_path}: describes no buildable network ({exc})") from None
    count = sum(p.numel() for p in skeleton.parameters())
    if count > MAX_PARAMETERS:
        raise VaeedofError(f"{info_path}: describes a network of {count:,} parameters, "
                           f"more than the bound of {MAX_PARAMETERS:,}")
    shapes = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    if shapes != found:
        wrong = sorted(set(shapes) ^ set(found)) or [n for n in shapes if shapes[n] != found[n]]
        raise VaeedofError(f"{weights}: does not match its JSON (first difference: {wrong[0]})")
    model = build()
    model.load_state_dict(state)
    return model


def checkpoint_vae(weights: Path, info: dict, resources_dir: str | os.PathLike,
                   mirrors: list[str] | None):
    """The frozen VAE the checkpoint was trained with, verified to be those very weights."""
    from ..nets.vae import load_vae

    vae = load_vae(info["vae"], resources_dir, mirrors)
    if vae.checksums != info["vae_checksums"]:
        raise VaeedofError(f"{weights}: trained with other {info['vae']} weights than the ones found")
    return vae


def load_fuser(checkpoint: str | os.PathLike | None, device: str = "auto", tile: int | None = DEFAULT_TILE,
               resources_dir: str | os.PathLike = "resources", mirrors: list[str] | None = None,
               mode: str = "latent", strict_mode: bool = True, precision: str = "auto",
               hybrid: dict | None = None, quality: str = "fast") -> Fuser:
    """A Fuser from an exported `fusion_ema.safetensors` and the JSON beside it. Hybrid mode needs
    a checkpoint trained with the hybrid loss: an error, or with `strict_mode` False (the mode
    came from a default, not from the user) latent mode and a warning. The hybrid mix's settings
    are the model's (it was trained with them), `hybrid` (`fusion.hybrid_*` keys) over them.
    `quality`: fast (the network decides on shrunk views of large frames) or max (`Fuser`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    device = resolve_device(device)
    weights, source, info = read_checkpoint(checkpoint)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise VaeedofError(f"{weights}: not a fusion checkpoint ({exc})") from None
    model = _build_model(info, state, weights)
    vae = checkpoint_vae(weights, info, resources_dir, mirrors)
    if mode == "hybrid" and not info.get("hybrid_trained"):
        if strict_mode:
            raise VaeedofError(f"{weights}: trained without the hybrid loss (train.hybrid_weight 0); "
                               "use the latent output mode")
        get_logger().warning("%s: trained without the hybrid loss; using the latent output mode", weights)
        mode = "latent"
    chosen = {key: value for key, value in (hybrid or {}).items() if key in HybridSettings.KEYS.values()}
    if chosen:
        get_logger().info("hybrid settings over the model's: %s",
                          ", ".join(f"fusion.{k}={v}" for k, v in sorted(chosen.items())))
    fuser = Fuser(model, vae, device, tile, mode=mode, hybrid=HybridSettings.of(info | chosen),
                  hybrid_trained=bool(info.get("hybrid_trained")), precision=precision,
                  checkpoint=weights, quality=quality)
    get_logger().info("model: %s (%s)", weights, source)
    return fuser
