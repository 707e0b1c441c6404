"""The frozen tiny VAE: the TAESD family (madebyollin/taesd) in one small module.

TAESD3 (16 latent channels, the paper's choice), TAEF2 (32 channels; its middle blocks add a
GroupNorm branch), TAESD/TAESDXL (4) and TAEF1 (16) share one layout: 8x down- and up-sampling
with residual blocks. Images are float in [0, 1]; latents are the raw (unscaled) encoder output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import VaeedofError
from ..hashing import sha256_file

SCALE = 8  # spatial down-sampling factor of every supported VAE

# Tiled inference (`vaeedof.fusion.vae_tiles`) splits both networks where the last global
# operation (TAEF2's GroupNorm branches, at latent resolution) ends or begins: the full-resolution
# parts are purely convolutional, so tiles with this much context are exact.
ENCODER_SPLIT = 11  # encoder[:11] ends with the last stride-2 convolution (1/8 resolution)
DECODER_SPLIT = 6  # decoder[:6] is the latent-resolution part (its GroupNorm blocks)
ENCODER_HALO = 72  # pixels: >= the receptive radius of encoder[:11] (65 px), a multiple of 8
DECODER_HALO = 10  # latent pixels: >= the receptive radius of decoder[6:] (65 px = 8.1 latent px)


@dataclass(frozen=True)
class VaeSpec:
    name: str
    latent_channels: int
    midblock_groupnorm: bool = False


SPECS = {
    "taesd": VaeSpec("taesd", 4),
    "taesdxl": VaeSpec("taesdxl", 4),
    "taesd3": VaeSpec("taesd3", 16),
    "taef1": VaeSpec("taef1", 16),
    "taef2": VaeSpec("taef2", 32, midblock_groupnorm=True),
}


def _conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class _SoftClamp(nn.Module):
    """Keeps decoder inputs within +-3 smoothly (as the checkpoints were trained)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class _Block(nn.Module):
    def __init__(self, channels: int, groupnorm_branch: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(channels, channels), nn.ReLU(), _conv(channels, channels),
                                  nn.ReLU(), _conv(channels, channels))
        self.skip = nn.Identity()
        self.fuse = nn.ReLU()
        # TAEF2 (FLUX.2) middle blocks: a 1x1 bottleneck with GroupNorm added to the input first.
        self.pool = None
        if groupnorm_branch:
            wide = channels * 4
            self.pool = nn.Sequential(nn.Conv2d(channels, wide, 1, bias=False), nn.GroupNorm(4, wide),
                                      nn.ReLU(), nn.Conv2d(wide, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def build_encoder(spec: VaeSpec) -> nn.Sequential:
    gn = spec.midblock_groupnorm
    layers: list[nn.Module] = [_conv(3, 64), _Block(64)]
    for stage in range(3):
        layers.append(_conv(64, 64, stride=2, bias=False))
        layers += [_Block(64, groupnorm_branch=gn and stage == 2) for _ in range(3)]
    layers.append(_conv(64, spec.latent_channels))
    return nn.Sequential(*layers)


def build_decoder(spec: VaeSpec) -> nn.Sequential:
    gn = spec.midblock_groupnorm
    layers: list[nn.Module] = [_SoftClamp(), _conv(spec.latent_channels, 64), nn.ReLU()]
    for stage in range(3):
        layers += [_Block(64, groupnorm_branch=gn and stage == 0) for _ in range(3)]
        layers += [nn.Upsample(scale_factor=2), _conv(64, 64, bias=False)]
    layers += [_Block(64), _conv(64, 3)]
    return nn.Sequential(*layers)


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A .pth (loaded with weights_only: a pickle can never run code) or .safetensors file."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any loader failure is the same user error
        raise VaeedofError(f"{path}: not a loadable weight file ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VaeedofError(f"{path}: not a state dict of tensors")
    return state


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom and right edges to multiples of `multiple`: by reflection, or by
    replication where the image is too small to reflect. Any dtype (by indexing, as F.pad's
    reflect mode would give)."""
    height, width = images.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not (pad_h or pad_w):
        return images
    reflect = min(height, width) > max(pad_h, pad_w)

    def index(length: int, pad: int) -> torch.Tensor:
        extra = [length - 2 - i if reflect else length - 1 for i in range(pad)]
        return torch.tensor(list(range(length)) + extra, device=images.device)

    return images.index_select(-2, index(height, pad_h)).index_select(-1, index(width, pad_w))


class TinyVAE(nn.Module):
    """Frozen encoder + decoder. `encode`/`decode` pad sides to multiples of 8 and crop back."""

    def __init__(self, spec: VaeSpec):
        super().__init__()
        self.spec = spec
        self.encoder = build_encoder(spec)
        self.decoder = build_decoder(spec)
        self.checksums: dict[str, str] = {}
        self.requires_grad_(False)
        self.eval()

    @property
    def latent_channels(self) -> int:
        return self.spec.latent_channels

    def load_weights(self, encoder_path: Path, decoder_path: Path) -> TinyVAE:
        for part, path in (("encoder", encoder_path), ("decoder", decoder_path)):
            state = load_state_dict(path)
            module = getattr(self, part)
            dtype = next(module.parameters()).dtype
            try:
                module.load_state_dict({k: v.to(dtype) for k, v in state.items()})
            except RuntimeError as exc:
                first = str(exc).splitlines()[0]
                raise VaeedofError(f"{path}: does not fit the {self.spec.name} {part} ({first})") from None
            self.checksums[part] = sha256_file(path)
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, C, ceil(H/8), ceil(W/8)); edges padded by reflection."""
        return self.encoder(pad_to_multiple(images, SCALE))

    def encode_features(self, images: torch.Tensor) -> torch.Tensor:
        """The full-resolution, purely convolutional part of the encoder (sides multiples of 8)."""
        return self.encoder[:ENCODER_SPLIT](images)

    def encode_tail(self, features: torch.Tensor) -> torch.Tensor:
        return self.encoder[ENCODER_SPLIT:](features)

    def decode_head(self, latents: torch.Tensor) -> torch.Tensor:
        """The latent-resolution part of the decoder (global: GroupNorm statistics)."""
        return self.decoder[:DECODER_SPLIT](latents)

    def decode_tail(self, features: torch.Tensor) -> torch.Tensor:
        """The up-sampling, purely convolutional part; images in [0, 1]."""
        return self.decoder[DECODER_SPLIT:](features).clamp(0, 1)

    def decode(self, latents: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Latents -> images in [0, 1], cropped to `size` (H, W) when given."""
        images = self.decoder(latents).clamp(0, 1)
        if size is not None:
            images = images[..., : size[0], : size[1]]
        return images

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images), images.shape[-2:])


def spec_for(name: str) -> VaeSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise VaeedofError(f"VAE '{name}': unknown (known: {', '.join(sorted(SPECS))})") from None


def weight_paths(name: str, resources_dir: str | os.PathLike = "resources",
                 mirrors: list[str] | None = None, pins: dict | None = None) -> tuple[Path, Path]:
    """Verified encoder and decoder files of a registered VAE, through the asset layer
    (downloads/ cache, mirror folders, then the network); `pins` supplies missing checksums."""
    from ..assets.fetch import resolve
    from ..assets.registry import lookup, with_pins

    spec_for(name)
    pins = pins or {}
    return tuple(resolve(with_pins(lookup(f"{name}_{part}"), pins.get(part)), resources_dir,  # type: ignore[return-value]
                         mirrors) for part in ("encoder", "decoder"))


def load_vae(name: str, resources_dir: str | os.PathLike = "resources", mirrors: list[str] | None = None,
             device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
             pins: dict | None = None) -> TinyVAE:
    encoder, decoder = weight_paths(name, resources_dir, mirrors, pins)
    vae = TinyVAE(spec_for(name)).to(dtype=dtype)
    return vae.load_weights(encoder, decoder).to(device)


def load_from_params(params: dict, resources_dir: str | os.PathLike = "resources",
                     device: str | torch.device = "cpu") -> TinyVAE:
    return load_vae(params["vae"]["name"], resources_dir, params["assets"]["mirrors"], device,
                    pins=params["vae"].get("sha256"))
