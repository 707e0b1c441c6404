"""Fusing images of any size and any number, each pixel's work done once.

1. Every input is encoded once over the whole image (`vae_tiles`: exact tiles with just the
   receptive field's halo; one pass when the image fits).
2. The Fusion U-Net runs over latent tiles of `tile / 8` (`tile` a multiple of 64) overlapping
   by a quarter, as the paper does; the fused latents and the hybrid mix logits are blended with
   weights that ramp linearly across each overlap (the paper's gradient blending), so no seam
   shows. `tile` None: one pass over the whole latent.
3. The fused latent is decoded once, in exact tiles; in `hybrid` mode each decoded tile is mixed
   with the inputs (`vaeedof.nets.hybrid`) right there.

More inputs than `max_inputs` (real focus stacks have 10-50 frames): the stack, in focus order,
is split into consecutive groups of at most `max_inputs`, each group is fused, and the group
results are fused again, recursively. Neighbouring frames share most of their sharp regions, so
each group result keeps the sharp content of its depth range.

`timings` accumulates seconds per stage (encode, unet, decode, compose) for benchmarks.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from ..devices import tune_cpu_allocator
from ..errors import VaeedofError
from ..images import as_float
from ..logs import progress
from ..nets.hybrid import (
    DEFAULT_SETTINGS,
    HybridSettings,
    compose,
    distinct_slots,
    mix_weights,
    window_distance,
)
from ..nets.unet import FusionUNet, fill_inputs
from ..nets.vae import SCALE, pad_to_multiple
from ..params import schema_defaults
from . import vae_tiles
from .options import OUTPUT_MODES as MODES
from .options import PRECISIONS, QUALITIES, TILE_MULTIPLE, VIEW_SIDE, WHOLE_SIDE

DEFAULT_TILE = schema_defaults()["infer"]["tile"]
# The fast path's network view: a frame larger than WHOLE_SIDE squared pixels is shrunk by the
# smallest integer factor that brings it to VIEW_SIDE squared or less, and the hybrid's pixel-level
# terms carry the decision to full resolution. On gt-stacks s512 views of 256 x 256 decided as well
# as the whole frames, views of 128 x 128 (s256 shrunk) lost 0.5 dB. Frames of the benchmark
# collections (Lytro, MFFW, MFI-WHU, gt-stacks) are not shrunk: the fast path is the max path there.
WHOLE_PIXELS, VIEW_PIXELS = WHOLE_SIDE**2, VIEW_SIDE**2
# Channels carried after a frame's colour (`fuse_with_focus_index`): its focus index, and how
# decided the choice of it was.
FOCUS_INDEX, FOCUS_CONFIDENCE = 3, 4
COMPOSE_TILE = 512  # core side (px) of a full-resolution compose region on the fast path
COMPOSE_HALO = 80  # px of context around it: the focus, reblur and smoothing windows fit inside


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


def upsample_region(grid: torch.Tensor, region: tuple[int, int, int, int], factor: int) -> torch.Tensor:
    """(n, h, w) on a grid `factor` times coarser than pixels -> (1, n, r1 - r0, c1 - c0) at pixel
    resolution over `region` (multiples of `factor`), bilinear, with a grid pixel of context."""
    r0, r1, c0, c1 = region
    a0, a1 = max(0, r0 // factor - 1), min(grid.shape[-2], r1 // factor + 1)
    b0, b1 = max(0, c0 // factor - 1), min(grid.shape[-1], c1 // factor + 1)
    values = F.interpolate(grid[None, :, a0:a1, b0:b1], scale_factor=factor, mode="bilinear",
                           align_corners=False)
    top, left = r0 - a0 * factor, c0 - b0 * factor
    return values[..., top:top + (r1 - r0), left:left + (c1 - c0)]


def carrying_focus_index(frames: list[torch.Tensor]) -> list[torch.Tensor]:
    """The frames (float) with two more channels: their index in the stack (FOCUS_INDEX) and a
    confidence of 1 (FOCUS_CONFIDENCE). The hybrid carries them along (`Fuser._mix`), so the
    output's say which frame each pixel took and how decided that was."""
    height, width = frames[0].shape[-2:]
    return [torch.cat([as_float(frame), torch.full((1, height, width), float(index)),
                       torch.ones(1, height, width)]) for index, frame in enumerate(frames)]


def group_stack(count: int, max_inputs: int) -> list[list[int]]:
    """Consecutive, near-equal groups of at most max_inputs frame indices."""
    groups = math.ceil(count / max_inputs)
    bounds = [round(i * count / groups) for i in range(groups + 1)]
    return [list(range(bounds[i], bounds[i + 1])) for i in range(groups)]


class Fuser:
    """The frozen VAE + the (EMA) Fusion U-Net over whole images."""

    def __init__(self, model: FusionUNet, vae, device: str | torch.device = "cpu",
                 tile: int | None = DEFAULT_TILE, batch_tiles: int | None = None, mode: str = "latent",
                 hybrid: HybridSettings = DEFAULT_SETTINGS, hybrid_trained: bool = True,
                 vae_tile: int = vae_tiles.VAE_TILE, precision: str = "auto", checkpoint: Path | None = None,
                 quality: str = "fast", whole_pixels: int = WHOLE_PIXELS, view_pixels: int = VIEW_PIXELS):
        self.checkpoint = checkpoint  # the weights it was loaded from (None: built in memory)
        if mode not in MODES:
            raise VaeedofError(f"output mode {mode!r}: expected one of {', '.join(MODES)}")
        if tile is not None and (tile % TILE_MULTIPLE or tile < TILE_MULTIPLE):
            raise VaeedofError(f"tile {tile}: must be a positive multiple of {TILE_MULTIPLE}")
        if precision not in PRECISIONS:
            raise VaeedofError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        if quality not in QUALITIES:
            raise VaeedofError(f"quality {quality!r}: expected one of {', '.join(QUALITIES)}")
        self.mode, self.hybrid, self.hybrid_trained = mode, hybrid, hybrid_trained
        self.quality, self.whole_pixels, self.view_pixels = quality, whole_pixels, view_pixels
        self.device = torch.device(device)
        self.precision = precision
        if self.device.type == "cpu":
            tune_cpu_allocator()
        # GPUs take batches of U-Net tiles; on a CPU, batching only costs memory.
        self.batch_tiles = batch_tiles or (1 if self.device.type == "cpu" else 8)
        # Channels-last: oneDNN's convolutions ran 1.6x faster so on a 2-core CPU.
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.vae = vae.to(self.device, memory_format=torch.channels_last).eval()
        self.tile, self.vae_tile = tile, vae_tile
        self.timings: dict[str, float] = defaultdict(float)

    @contextmanager
    def timed(self, stage: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.timings[stage] += time.perf_counter() - start

    def _autocast(self):
        """`auto`: half precision on GPUs (bf16 where supported), fp32 on the CPU; `bf16`: bf16
        anywhere (2x faster on CPUs with AVX512-BF16, VAE round trip 0.1 dB lower); `fp32`."""
        half = self.precision == "bf16" or (self.precision == "auto" and self.device.type == "cuda")
        if not half:
            return torch.autocast(self.device.type, enabled=False)
        dtype = torch.bfloat16
        if self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            dtype = torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.inference_mode()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) image (float in [0, 1], or uint8) -> its latent (C, ceil(H/8), ceil(W/8))."""
        with self.timed("encode"), self._autocast():
            padded = pad_to_multiple(image, SCALE).to(self.device)
            return vae_tiles.encode(self.vae, padded, self.vae_tile).float()

    @torch.inference_mode()
    def fuse_latents(self, latents: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents (C, h, w) of at most max_inputs images -> the fused latent (C, h, w) and the
        hybrid mix logits (max_inputs + 1, h, w), U-Net tiles blended across their overlaps."""
        stacked = fill_inputs(torch.stack(latents)[None], self.model.max_inputs)[0]
        h, w = stacked.shape[-2:]
        side = None if self.tile is None else self.tile // SCALE
        tile_h, tile_w = (h, w) if side is None else (min(side, h), min(side, w))
        overlap_h, overlap_w = tile_h // 4, tile_w // 4
        weight = ramp(tile_h, overlap_h).to(self.device)[:, None] * ramp(tile_w, overlap_w).to(self.device)
        origins = [(y, x) for y in tile_starts(h, tile_h, overlap_h)
                   for x in tile_starts(w, tile_w, overlap_w)]
        fused = mix = total = None
        with self.timed("unet"), self._autocast():
            for first in progress(range(0, len(origins), self.batch_tiles), desc="U-Net tiles", leave=False):
                batch = origins[first:first + self.batch_tiles]
                crops = torch.stack([stacked[..., y:y + tile_h, x:x + tile_w] for y, x in batch])
                out, logits = self.model(crops, with_mix=True)
                if fused is None:
                    fused = out.new_zeros(out.shape[1], h, w, dtype=torch.float32)
                    mix = out.new_zeros(logits.shape[1], h, w, dtype=torch.float32)
                    total = out.new_zeros(h, w, dtype=torch.float32)
                for (y, x), tile_out, tile_mix in zip(batch, out.float(), logits.float(), strict=True):
                    fused[:, y:y + tile_h, x:x + tile_w] += tile_out * weight
                    mix[:, y:y + tile_h, x:x + tile_w] += tile_mix * weight
                    total[y:y + tile_h, x:x + tile_w] += weight
        return fused / total, mix / total

    @torch.inference_mode()
    def render(self, fused: torch.Tensor, mix: torch.Tensor, padded: list[torch.Tensor], mode: str,
               size: tuple[int, int]) -> torch.Tensor:
        """Decode the fused latent tile by tile; in hybrid mode mix each decoded tile with the
        inputs (padded to the latent grid) right away. Returns (3, H, W) on the CPU."""
        height, width = size
        out = torch.empty(padded[0].shape[0] if mode == "hybrid" else 3, height, width)
        tiles = vae_tiles.decode_tiles(self.vae, fused, self.vae_tile)
        while True:
            with self.timed("decode"), self._autocast():
                item = next(tiles, None)
            if item is None:
                return out
            region, (y0, y1, x0, x1), pixels = item
            if mode == "hybrid":
                with self.timed("compose"):
                    pixels = self._compose(region, pixels, mix, padded)
            r0, c0 = region[0], region[2]
            y1, x1 = min(y1, height), min(x1, width)
            if y0 < y1 and x0 < x1:
                out[:, y0:y1, x0:x1] = pixels[:, y0 - r0:y1 - r0, x0 - c0:x1 - c0].float().cpu()

    def _compose(self, region, decoded: torch.Tensor, mix: torch.Tensor, padded: list[torch.Tensor]
                 ) -> torch.Tensor:
        """The hybrid output over one decoded region: inputs, decoded pixels and the mix logits
        mixed per pixel."""
        r0, r1, c0, c1 = region
        inputs = torch.stack([as_float(image[:, r0:r1, c0:c1]) for image in padded]).to(self.device)
        inputs = fill_inputs(inputs[None], self.model.max_inputs)
        return self._mix(self.pixel_logits(mix, region), inputs, decoded[None].float(),
                         self.model.mix_sharpness)

    def _mix(self, logits: torch.Tensor, inputs: torch.Tensor, decoded: torch.Tensor | None,
             sharpness: torch.Tensor, distance: torch.Tensor | None = None, reblur_reduction: int = 2
             ) -> torch.Tensor:
        """`compose` over one region, (1, slots, C, h, w) -> (C, h, w). A focus index carried after
        the colour (`carrying_focus_index`) is the one of the input with the largest weight (slots
        that repeat an input pooled): a blend of two frames far apart in focus is not a frame
        between them. Its confidence: that weight times the input's own (1 for a frame)."""
        if inputs.shape[2] == 3:
            return compose(logits, inputs, decoded, sharpness, self.hybrid, distance, reblur_reduction)[0]
        colour = inputs[:, :, :3]
        weights = mix_weights(logits, colour, decoded, sharpness, self.hybrid, distance, reblur_reduction)[0]
        firsts, slot_of = distinct_slots(colour[0])
        pooled = weights.new_zeros(len(firsts), *weights.shape[1:]).index_add_(
            0, torch.tensor(slot_of, device=weights.device), weights)
        largest, chosen = pooled.max(dim=0, keepdim=True)
        index = inputs[0, firsts, FOCUS_INDEX].gather(0, chosen)
        confidence = largest * inputs[0, firsts, FOCUS_CONFIDENCE].gather(0, chosen)
        return torch.cat([(weights[:, None] * colour[0]).sum(dim=0), index, confidence])

    @staticmethod
    def pixel_logits(mix: torch.Tensor, region: tuple[int, int, int, int],
                     factor: int = SCALE) -> torch.Tensor:
        """The mix logits (n, h, w) at pixel resolution over `region` (rows r0:r1, columns c0:c1
        of the padded image, multiples of `factor`): bilinear from a grid `factor` times coarser
        (the latent's), with a grid pixel of context so that a region's border is interpolated
        as the whole image's would be."""
        return upsample_region(mix, region, factor)

    def decision_scale(self, height: int, width: int, mode: str | None = None) -> int:
        """By how much the network's view of a frame is shrunk: 1 on the `max` path, in latent
        mode (every pixel is decoded there) and for frames of `whole_pixels` or fewer; else to
        `view_pixels` or fewer."""
        if self.quality == "max" or (mode or self.mode) != "hybrid" or height * width <= self.whole_pixels:
            return 1
        return max(1, math.ceil(math.sqrt(height * width / self.view_pixels)))

    def network_view(self, image: torch.Tensor, scale: int) -> torch.Tensor:
        """What the network sees of a (3, H, W) frame: padded to the grid, shrunk by `scale`
        (area average; float in [0, 1]), or as stored at scale 1."""
        padded = pad_to_multiple(image[:3], SCALE * scale)
        if scale == 1:
            return padded
        return F.avg_pool2d(as_float(padded)[None], scale)[0]

    @torch.inference_mode()
    def fuse_level(self, images: list[torch.Tensor], mode: str, scale: int = 1,
                   latents: list[torch.Tensor] | None = None) -> torch.Tensor:
        """At most max_inputs same-size (3, H, W) images -> one, the network seeing them shrunk by
        `scale`. `latents`: encodings of those views (`network_view`)."""
        size = tuple(images[0].shape[-2:])
        views = [self.network_view(image, scale) for image in images]
        latents = latents if latents is not None else [self.encode(view) for view in views]
        fused, mix = self.fuse_latents(latents)
        padded = [pad_to_multiple(image, SCALE * scale) for image in images]  # with carried channels
        if scale == 1:
            return self.render(fused, mix, padded, mode, size)
        with self.timed("decode"), self._autocast():
            decoded = vae_tiles.decode(self.vae, fused, self.vae_tile).float()
        return self.compose_scaled(decoded, mix, padded, views, scale, size)

    def compose_scaled(self, decoded: torch.Tensor, mix: torch.Tensor, padded: list[torch.Tensor],
                       views: list[torch.Tensor], scale: int, size: tuple[int, int]) -> torch.Tensor:
        """The fast path's hybrid output: the network decided on views `scale` times smaller
        (mix logits, and the agreement of each view with the decoded fusion); the focus, reblur
        and smoothing terms work on the full-resolution inputs."""
        grid = SCALE * scale
        views = fill_inputs(torch.stack(views)[None], self.model.max_inputs)

        def steer(r0: int, r1: int, c0: int, c1: int):
            small = (..., slice(r0 // scale, r1 // scale), slice(c0 // scale, c1 // scale))
            distance = window_distance(views[small].to(self.device), decoded[None][small], self.hybrid.radius)
            distance = F.interpolate(distance, size=(r1 - r0, c1 - c0), mode="bilinear", align_corners=False)
            return self.pixel_logits(mix, (r0, r1, c0, c1), grid), distance, self.model.mix_sharpness

        # The reblur term at the view's scale as well: on gt-stacks s512 at 2x (blur twice as wide)
        # 0.4 dB better than at half resolution (7 of 8 stacks), and scale^2 times less work.
        return self._compose_regions(padded, size, grid, steer, self.model.max_inputs, 2 * scale)

    def merge_by_focus(self, images: list[torch.Tensor], scale: int = 1) -> torch.Tensor:
        """The fast path's first levels of a deep stack: neighbouring frames merged by the hybrid's
        pixel-level terms alone (focus, reblur, smoothing), no network. Frames close in focus
        differ little, so little rides on this choice; the network decides between the merged
        frames, where depths lie far apart. `scale`: the frames' decision scale (the reblur term
        works at it, as on large frames' views)."""
        grid = SCALE * scale
        padded = [pad_to_multiple(image, grid) for image in images]
        no_vote = torch.zeros(())

        def steer(r0: int, r1: int, c0: int, c1: int):
            flat = torch.zeros(1, len(images), 1, 1, device=self.device)
            return flat, torch.ones(1, len(images), r1 - r0, c1 - c0, device=self.device), no_vote

        return self._compose_regions(padded, tuple(images[0].shape[-2:]), grid, steer, len(images), 2 * scale)

    @torch.inference_mode()
    def _compose_regions(self, padded: list[torch.Tensor], size: tuple[int, int], grid: int, steer,
                         slots: int, reblur_reduction: int) -> torch.Tensor:
        """The hybrid mix over full-resolution regions (cores on multiples of `grid`, with a halo
        the focus, reblur and smoothing windows fit in); `steer(r0, r1, c0, c1)` gives a region's
        mix logits, agreement distances and their sharpness; inputs filled to `slots`."""
        height, width = size
        halo = math.ceil(COMPOSE_HALO / grid) * grid
        full_h, full_w = padded[0].shape[-2:]
        out = torch.empty(padded[0].shape[0], height, width)
        regions = [(y0, y1, x0, x1) for y0, y1 in vae_tiles.spans(full_h, COMPOSE_TILE, grid)
                   for x0, x1 in vae_tiles.spans(full_w, COMPOSE_TILE, grid)]
        with self.timed("compose"):
            for y0, y1, x0, x1 in progress(regions, desc="compose", leave=False):
                r0, r1 = max(0, y0 - halo), min(full_h, y1 + halo)
                c0, c1 = max(0, x0 - halo), min(full_w, x1 + halo)
                inputs = torch.stack([as_float(image[:, r0:r1, c0:c1]) for image in padded]).to(self.device)
                logits, distance, sharpness = steer(r0, r1, c0, c1)
                pixels = self._mix(logits, fill_inputs(inputs[None], slots), None, sharpness, distance,
                                   reblur_reduction)
                b1, d1 = min(y1, height), min(x1, width)
                if y0 < b1 and x0 < d1:
                    out[:, y0:b1, x0:d1] = pixels[:, y0 - r0:b1 - r0, x0 - c0:d1 - c0].float().cpu()
        return out

    def fuse(self, stack: list[torch.Tensor], mode: str | None = None,
             latents: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Any number of same-size images -> one; hierarchical beyond max_inputs. `latents`:
        the encodings of the inputs' network views when already computed (`network_view` at
        `decision_scale`, then `encode`)."""
        if not stack:
            raise VaeedofError("no input images")
        mode = mode or self.mode
        if mode not in MODES:
            raise VaeedofError(f"output mode {mode!r}: expected one of {', '.join(MODES)}")
        limit = self.model.max_inputs
        if self.merges_by_focus(len(stack), mode):
            stack, _ = self.merge_deep(stack, mode)
            latents = None
        scale = self.decision_scale(*stack[0].shape[-2:], mode)
        while len(stack) > limit:
            stack = [self.fuse_level([stack[i] for i in group], mode, scale,
                                     None if latents is None else [latents[i] for i in group])
                     for group in group_stack(len(stack), limit)]
            latents = None
        return self.fuse_level(stack, mode, scale, latents)

    def fuse_with_focus_index(self, stack: list[torch.Tensor], latents: list[torch.Tensor] | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The hybrid output (3, H, W) and, per pixel, which frame it took (H, W): the index (0 =
        the first, in stack order) of the frame with the largest weight there, carried through
        every level (a merged frame's is that of its own largest weight), and its confidence (H, W)
        in [0, 1]: that weight, times the merged frame's own confidence. `latents`: as `fuse`."""
        if self.mode != "hybrid":
            raise VaeedofError("a focus index needs the hybrid output (the latent output mixes no frames)")
        fused = self.fuse(carrying_focus_index(stack), "hybrid", latents)
        return fused[:3], fused[FOCUS_INDEX], fused[FOCUS_CONFIDENCE]

    def merges_by_focus(self, frames: int, mode: str | None = None) -> bool:
        """Whether a stack of `frames` is first merged by focus (`merge_deep`): on the fast path,
        in hybrid mode, beyond max_inputs frames. The network then sees merged frames only."""
        return self.quality == "fast" and (mode or self.mode) == "hybrid" and frames > self.model.max_inputs

    def merge_deep(self, stack: list[torch.Tensor], mode: str | None = None, names: list[str] | None = None
                   ) -> tuple[list[torch.Tensor], list[str]]:
        """A deep stack on the fast path -> at most max_inputs frames, consecutive groups merged by
        focus (`merge_by_focus`) as often as it takes; with names such as `a.jpg..g.jpg` for each
        merged frame (`names`: the frames'). Other stacks are returned as they are."""
        names = names or [f"frame {index}" for index in range(len(stack))]
        scale = self.decision_scale(*stack[0].shape[-2:], mode)
        while self.merges_by_focus(len(stack), mode):
            groups = group_stack(len(stack), self.model.max_inputs)
            stack = [self.merge_by_focus([stack[i] for i in group], scale)
                     for group in progress(groups, desc="merging by focus", leave=False)]
            names = [names[group[0]] if len(group) == 1 else
                     f"{names[group[0]]}..{Path(names[group[-1]]).name}" for group in groups]
        return stack, names
