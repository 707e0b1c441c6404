"""The Fusion U-Net: the latents of up to `max_inputs` images, concatenated on channels (fewer
inputs filled by duplicating existing ones), fused into one latent of the VAE's channel count.

Three down-sampling and three up-sampling residual blocks; the middle blocks add self-attention.
The network predicts the fused latent as a per-position soft selection of the input latents
(softmax weights over the inputs) plus a residual for what no input holds. Its last convolution
starts at zero, so an untrained model returns the average of the inputs; selecting in latent
space is what multi-focus fusion mostly is, and this form learns it in far fewer steps than
regressing the latent from scratch.

A second set of head channels gives, per latent position, the mix logits of the hybrid output
(`vaeedof.nets.hybrid`): one per input slot, and one the hybrid no longer reads (the decoded
image's own slot, kept so that existing checkpoints load).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEPTH = 3  # down-sampling levels: latent sides are padded to multiples of 2**DEPTH


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4) or 1, channels)


class ResBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.body = nn.Sequential(_norm(n_in), nn.SiLU(), nn.Conv2d(n_in, n_out, 3, padding=1),
                                  _norm(n_out), nn.SiLU(), nn.Conv2d(n_out, n_out, 3, padding=1))
        self.skip = nn.Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over spatial positions, residual."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, channels * 3, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        q, k, v = (t.transpose(-1, -2).contiguous() for t in (q, k, v))  # (B, heads, positions, dim)
        if h * w == 1:
            out = v  # one position attends only to itself (CUDA's kernels reject this shape in fp32)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class FusionUNet(nn.Module):
    def __init__(self, latent_channels: int, max_inputs: int = 7, widths=(64, 128, 256),
                 attention_heads: int = 4):
        super().__init__()
        if len(widths) != DEPTH:
            raise ValueError(f"widths must list {DEPTH} channel counts, got {widths}")
        self.latent_channels = latent_channels
        self.max_inputs = max_inputs
        self.stem = nn.Conv2d(latent_channels * max_inputs, widths[0], 3, padding=1)
        chans = [widths[0], *widths]
        self.down_blocks = nn.ModuleList(ResBlock(chans[i], chans[i + 1]) for i in range(DEPTH))
        self.downsamples = nn.ModuleList(
            nn.Conv2d(chans[i + 1], chans[i + 1], 3, stride=2, padding=1) for i in range(DEPTH))
        bottom = widths[-1]
        self.mid = nn.Sequential(ResBlock(bottom, bottom), SelfAttention(bottom, attention_heads),
                                 ResBlock(bottom, bottom), SelfAttention(bottom, attention_heads))
        # Level i takes chans[i + 1] channels from below and its skip, and gives chans[i].
        self.upsamples = nn.ModuleList(
            nn.Conv2d(chans[i + 1], chans[i + 1], 3, padding=1) for i in range(DEPTH))
        self.up_blocks = nn.ModuleList(ResBlock(2 * chans[i + 1], chans[i]) for i in range(DEPTH))
        # Per position: max_inputs selection logits, a latent_channels residual, then the hybrid
        # mix logits (max_inputs + 1).
        self.head = nn.Sequential(_norm(widths[0]), nn.SiLU(),
                                  nn.Conv2d(widths[0], 2 * max_inputs + 1 + latent_channels, 3,
                                            padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        # How strongly the pixel-level agreement with the decoded image sharpens the hybrid mix.
        self.mix_sharpness = nn.Parameter(torch.tensor(1.0))

    def forward(self, latents: torch.Tensor, with_mix: bool = False):
        """(B, max_inputs, C, h, w) -> fused (B, C, h, w); with_mix: also the hybrid mix logits
        (B, max_inputs + 1, h, w)."""
        b, n, c, h, w = latents.shape
        if n != self.max_inputs or c != self.latent_channels:
            raise ValueError(f"expected (B, {self.max_inputs}, {self.latent_channels}, h, w), "
                             f"got {tuple(latents.shape)}")
        multiple = 2**DEPTH
        pad_h, pad_w = (-h) % multiple, (-w) % multiple
        x = latents.reshape(b, n * c, h, w)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        x = self.stem(x)
        skips = []
        for block, down in zip(self.down_blocks, self.downsamples, strict=True):
            x = block(x)
            skips.append(x)
            x = down(x)
        x = self.mid(x)
        for level in reversed(range(DEPTH)):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self.upsamples[level](x)
            x = self.up_blocks[level](torch.cat([x, skips[level]], dim=1))
        out = self.head(x)[..., :h, :w]
        weights = torch.softmax(out[:, :n], dim=1).unsqueeze(2)  # (B, n, 1, h, w)
        fused = (weights * latents).sum(dim=1) + out[:, n:n + c]
        return (fused, out[:, n + c:]) if with_mix else fused


def fill_inputs(latents: torch.Tensor, max_inputs: int, generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """(B, k, C, h, w) with k <= max_inputs -> (B, max_inputs, C, h, w) by duplicating inputs:
    cyclically (deterministic, for inference) or at random (with a generator, for training)."""
    k = latents.shape[1]
    if k > max_inputs:
        raise ValueError(f"{k} inputs exceed max_inputs = {max_inputs}")
    if k == max_inputs:
        return latents
    if generator is None:
        extra = torch.arange(max_inputs - k) % k
    else:
        extra = torch.randint(0, k, (max_inputs - k,), generator=generator)
    return torch.cat([latents, latents[:, extra]], dim=1)


def build_model(params: dict, latent_channels: int) -> FusionUNet:
    cfg = params["model"]
    return FusionUNet(latent_channels, cfg["max_inputs"], tuple(cfg["widths"]), cfg["attention_heads"])
