"""A Fuser from a trained model: the exported `fusion_ema.safetensors`, the JSON beside it, and
the frozen VAE it was trained with (verified through the asset layer).

Which model: `--checkpoint` when given, else a pipeline-trained model in the working folder, else
the release model shipped inside the installed package (so a fresh install fuses anywhere)."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

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


def load_fuser(checkpoint: str | os.PathLike | None, device: str = "auto", tile: int | None = DEFAULT_TILE,
               resources_dir: str | os.PathLike = "resources", mirrors: list[str] | None = None,
               mode: str = "latent", strict_mode: bool = True, precision: str = "auto") -> Fuser:
    """A Fuser from an exported `fusion_ema.safetensors` and the JSON beside it. Hybrid mode needs
    a checkpoint trained with the hybrid loss: an error, or with `strict_mode` False (the mode
    came from a default, not from the user) latent mode and a warning."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..nets.vae import load_vae

    weights, source = choose_checkpoint(checkpoint)
    info_path = weights.with_suffix(".json")
    if not weights.exists():
        raise VaeedofError(f"{weights}: no trained model (train one with `snakemake --cores all`, "
                           "or pass --checkpoint)")
    try:
        info = json.loads(info_path.read_text())
        state = load_file(str(weights))
    except FileNotFoundError:
        raise VaeedofError(f"{info_path}: missing (exported beside the weights by `vaeedof train`)") from None
    except (json.JSONDecodeError, SafetensorError, OSError) as exc:
        raise VaeedofError(f"{weights}: not a fusion checkpoint ({exc})") from None
    model = FusionUNet(info["latent_channels"], info["max_inputs"], tuple(info["widths"]),
                       info["attention_heads"])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise VaeedofError(f"{weights}: does not match its JSON ({str(exc).splitlines()[0]})") from None
    vae = load_vae(info["vae"], resources_dir, mirrors)
    if vae.checksums != info["vae_checksums"]:
        raise VaeedofError(f"{weights}: trained with other {info['vae']} weights than the ones found")
    device = resolve_device(device)
    if mode == "hybrid" and not info.get("hybrid_trained"):
        if strict_mode:
            raise VaeedofError(f"{weights}: trained without the hybrid loss (train.hybrid_weight 0); "
                               "use the latent output mode")
        get_logger().warning("%s: trained without the hybrid loss; using the latent output mode", weights)
        mode = "latent"
    fuser = Fuser(model, vae, device, tile, mode=mode, hybrid=HybridSettings.of(info),
                  hybrid_trained=bool(info.get("hybrid_trained")), precision=precision,
                  checkpoint=weights)
    get_logger().info("model: %s (%s)", weights, source)
    return fuser
