"""Fusing images of any size and any number: overlapping tiles blended with a gradient alpha
mask (the paper's Figure 3), and hierarchical fusion for stacks larger than the network's input.

Tiles are `tile` pixels (a multiple of 64, so the VAE's 8x and the U-Net's 8x reductions divide
it) overlapping by tile/4. Each tile's inputs are encoded, fused and decoded; the decoded tiles
are accumulated with weights that ramp linearly across the overlap and normalised, so no seam
shows. Inputs stay at their stored precision; only one batch of tiles is in float at a time.

More inputs than `max_inputs` (real focus stacks have 10-50 frames): the stack, in focus order,
is split into consecutive groups of at most `max_inputs`, each group is fused, and the group
results are fused again, recursively. Neighbouring frames share most of their sharp regions, so
each group result keeps the sharp content of its depth range.

Output modes: `latent` (the paper: every pixel decoded by the VAE) and `hybrid` (each tile's
inputs and decoded fusion mixed per pixel by the network's weights, `vaeedof.nets.hybrid`); the tiles
of either are blended the same way.
"""

from __future__ import annotations

import math

import torch

from ..errors import VaeedofError
from ..logs import progress
from ..nets.hybrid import compose
from ..nets.unet import FusionUNet, fill_inputs
from ..params import schema_defaults

TILE_MULTIPLE = 64
MODES = ("latent", "hybrid")
DEFAULT_TILE = schema_defaults()["infer"]["tile"]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering [0, length): stride tile - overlap, the last flush with the end."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    starts = [min(i * stride, length - tile) for i in range(count)]
    return sorted(set(starts))


def ramp(tile: int, overlap: int) -> torch.Tensor:
    """1D weights: linear from ~0 to 1 over the overlap at both ends, never zero."""
    x = torch.arange(tile, dtype=torch.float32) + 0.5
    return torch.clamp(torch.minimum(x, tile - x) / max(overlap, 1), max=1.0)


def group_stack(count: int, max_inputs: int) -> list[list[int]]:
    """Consecutive, near-equal groups of at most max_inputs frame indices."""
    groups = math.ceil(count / max_inputs)
    bounds = [round(i * count / groups) for i in range(groups + 1)]
    return [list(range(bounds[i], bounds[i + 1])) for i in range(groups)]


class Fuser:
    """The frozen VAE + the (EMA) Fusion U-Net, applied tile by tile."""

    def __init__(self, model: FusionUNet, vae, device: str | torch.device = "cpu",
                 tile: int | None = DEFAULT_TILE, batch_tiles: int | None = None, mode: str = "latent",
                 hybrid_radius: int = 2, hybrid_trained: bool = True):
        if mode not in MODES:
            raise VaeedofError(f"output mode {mode!r}: expected one of {', '.join(MODES)}")
        self.mode, self.hybrid_radius, self.hybrid_trained = mode, hybrid_radius, hybrid_trained
        self.device = torch.device(device)
        # GPUs take batches of tiles; on a CPU, batching only costs memory.
        on_cpu = self.device.type == "cpu"
        self.batch_tiles = batch_tiles or (1 if on_cpu else 8)
        self.vae_batch = 2 if on_cpu else 16
        self.model = model.to(self.device).eval()
        self.vae = vae.to(self.device).eval()
        self.tile = tile
        if tile is not None and (tile % TILE_MULTIPLE or tile < TILE_MULTIPLE):
            raise VaeedofError(f"tile {tile}: must be a positive multiple of {TILE_MULTIPLE}")

    @torch.no_grad()
    def fuse_tiles(self, stack: list[torch.Tensor], mode: str | None = None) -> torch.Tensor:
        """(3, H, W) tensors in [0, 1], at most max_inputs of them -> fused (3, H, W)."""
        height, width = stack[0].shape[-2:]
        # Pad to a multiple of 64 (the VAE and U-Net reductions); a side shorter than the tile
        # is one tile of its own padded length (without tiling, the whole image is one tile).
        full_h, full_w = (math.ceil(side / TILE_MULTIPLE) * TILE_MULTIPLE for side in (height, width))
        tile_h, tile_w = (min(self.tile or full_h, full_h), min(self.tile or full_w, full_w))
        images = stack  # a list: no stacked copy of all full-size inputs
        if (full_h, full_w) != (height, width):
            # Not `mode`: that name is the output mode, passed on below.
            padding = "reflect" if min(height, width) > max(full_h - height, full_w - width) else "replicate"
            images = [torch.nn.functional.pad(image[None], (0, full_w - width, 0, full_h - height),
                                              mode=padding)[0] for image in stack]
        overlap_h, overlap_w = tile_h // 4, tile_w // 4
        weight_y, weight_x = ramp(tile_h, overlap_h), ramp(tile_w, overlap_w)
        weight = (weight_y[:, None] * weight_x[None, :])
        out = torch.zeros(3, full_h, full_w)
        total = torch.zeros(full_h, full_w)
        origins = [(y, x) for y in tile_starts(full_h, tile_h, overlap_h)
                   for x in tile_starts(full_w, tile_w, overlap_w)]
        bar = progress(total=len(origins), desc="tiles", leave=False)
        for first in range(0, len(origins), self.batch_tiles):
            batch = origins[first:first + self.batch_tiles]
            crops = torch.stack([torch.stack([image[:, y:y + tile_h, x:x + tile_w] for image in images])
                                 for y, x in batch])
            fused = self._fuse_batch(crops.to(self.device), mode or self.mode).float().cpu()
            for (y, x), result in zip(batch, fused, strict=True):
                out[:, y:y + tile_h, x:x + tile_w] += result * weight
                total[y:y + tile_h, x:x + tile_w] += weight
            bar.update(len(batch))
        bar.close()
        return (out / total)[:, :height, :width]

    def _fuse_batch(self, crops: torch.Tensor, mode: str) -> torch.Tensor:
        """(B, n, 3, T, T) -> (B, 3, T, T). The VAE runs a few images at a time: its full-
        resolution activations (64 channels per pixel) dominate memory."""
        b, n = crops.shape[:2]
        flat = crops.flatten(0, 1)
        latents = torch.cat([self.vae.encode(flat[i:i + self.vae_batch])
                             for i in range(0, len(flat), self.vae_batch)])
        latents = latents.view(b, n, *latents.shape[1:])
        fused, mix = self.model(fill_inputs(latents, self.model.max_inputs), with_mix=True)
        decoded = torch.cat([self.vae.decode(fused[i:i + self.vae_batch])
                             for i in range(0, b, self.vae_batch)])
        if mode == "latent":
            return decoded
        inputs = fill_inputs(crops.float(), self.model.max_inputs)
        return compose(mix, inputs, decoded.float(), self.model.mix_sharpness, self.hybrid_radius)

    def fuse(self, stack: list[torch.Tensor], mode: str | None = None) -> torch.Tensor:
        """Any number of same-size images -> one; hierarchical beyond max_inputs."""
        if not stack:
            raise VaeedofError("no input images")
        mode = mode or self.mode
        if mode not in MODES:
            raise VaeedofError(f"output mode {mode!r}: expected one of {', '.join(MODES)}")
        limit = self.model.max_inputs
        while len(stack) > limit:
            stack = [self.fuse_tiles([stack[i] for i in group], mode)
                     for group in group_stack(len(stack), limit)]
        return self.fuse_tiles(stack, mode)
