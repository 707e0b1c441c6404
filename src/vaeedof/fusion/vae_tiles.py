"""The frozen VAE over whole images of any size, each pixel's work done once, memory bounded.

Both networks are split where their global part (GroupNorm at latent resolution, in TAEF2) ends
or begins (`vaeedof.nets.vae`): the full-resolution parts are purely convolutional and run in
tiles with just the context their receptive field needs (a halo), which makes the tiles exact:
the result equals one pass over the whole image. The latent-resolution parts (1/64 of the pixels)
run over the whole image at once. Tiles cover the image evenly, aligned to the VAE's 8x grid;
an image small enough for one tile is one pass with no halo at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ..images import as_float
from ..nets.vae import DECODER_HALO, ENCODER_HALO, SCALE

# Core side (pixels) of a full-resolution VAE tile: bounds memory (64 channels per pixel in
# float32, about 210 MB per activation of a haloed tile) while keeping the halo's share small.
VAE_TILE = 768


def spans(length: int, core: int, multiple: int = 1) -> list[tuple[int, int]]:
    """[0, length) cut into the fewest near-equal spans of about `core` at most, the cuts on
    multiples of `multiple`."""
    count = max(1, math.ceil(length / core))
    cuts = sorted({0, length} | {round(i * length / count / multiple) * multiple for i in range(1, count)})
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def is_tileable(vae) -> bool:
    """The TAESD family can be split; a stand-in VAE (tests) runs whole."""
    return hasattr(vae, "encode_features")


def _fits(height: int, width: int, core: int, halo: int) -> bool:
    return height * width <= (core + 2 * halo) ** 2


def _network_input(image: torch.Tensor) -> torch.Tensor:
    """(3, h, w) stored pixels -> (1, 3, h, w) float in [0, 1], channels-last (the networks')."""
    return as_float(image)[None].contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def encode(vae, image: torch.Tensor, core: int = VAE_TILE) -> torch.Tensor:
    """(3, H, W) with sides multiples of 8 (uint8 or float) -> (C, H/8, W/8), equal to
    `vae.encode` of the whole."""
    height, width = image.shape[-2:]
    if not is_tileable(vae):
        return vae.encode(_network_input(image))[0]
    if _fits(height, width, core, ENCODER_HALO):
        return vae.encode_tail(vae.encode_features(_network_input(image)))[0]
    features = None
    for y0, y1 in spans(height, core, SCALE):
        for x0, x1 in spans(width, core, SCALE):
            a0, a1 = max(0, y0 - ENCODER_HALO), min(height, y1 + ENCODER_HALO)
            b0, b1 = max(0, x0 - ENCODER_HALO), min(width, x1 + ENCODER_HALO)
            tile = vae.encode_features(_network_input(image[:, a0:a1, b0:b1]))
            if features is None:
                features = tile.new_empty(1, tile.shape[1], height // SCALE, width // SCALE)
            top, left = (y0 - a0) // SCALE, (x0 - b0) // SCALE
            features[..., y0 // SCALE:y1 // SCALE, x0 // SCALE:x1 // SCALE] = \
                tile[..., top:top + (y1 - y0) // SCALE, left:left + (x1 - x0) // SCALE]
    return vae.encode_tail(features)[0]


@torch.inference_mode()
def decode_tiles(vae, latent: torch.Tensor, core: int = VAE_TILE
                 ) -> Iterator[tuple[tuple[int, int, int, int], tuple[int, int, int, int], torch.Tensor]]:
    """Decode (C, h, w) tile by tile: yields (region, core, pixels) with region = (y0, y1, x0, x1)
    the pixels' place in the (8h, 8w) image and core the part of it this tile stands for (the
    cores tile the image). Pixels are exact wherever their distance to a region edge that is
    not an image edge exceeds the decoder's receptive radius (65 px): the halo is 80 px."""
    h, w = latent.shape[-2:]
    if not is_tileable(vae):
        yield (0, h * SCALE, 0, w * SCALE), (0, h * SCALE, 0, w * SCALE), vae.decode(latent[None])[0]
        return
    head = vae.decode_head(latent[None])
    whole = _fits(h * SCALE, w * SCALE, core, DECODER_HALO * SCALE)
    cell = max(1, core // SCALE)
    for y0, y1 in [(0, h)] if whole else spans(h, cell):
        for x0, x1 in [(0, w)] if whole else spans(w, cell):
            a0, a1 = max(0, y0 - DECODER_HALO), min(h, y1 + DECODER_HALO)
            b0, b1 = max(0, x0 - DECODER_HALO), min(w, x1 + DECODER_HALO)
            pixels = vae.decode_tail(head[..., a0:a1, b0:b1])[0]
            region = (a0 * SCALE, a1 * SCALE, b0 * SCALE, b1 * SCALE)
            yield region, (y0 * SCALE, y1 * SCALE, x0 * SCALE, x1 * SCALE), pixels


def decode(vae, latent: torch.Tensor, core: int = VAE_TILE) -> torch.Tensor:
    """(C, h, w) -> (3, 8h, 8w) in [0, 1], equal to `vae.decode` of the whole."""
    h, w = latent.shape[-2:]
    out = None
    for (r0, _, c0, _), (y0, y1, x0, x1), pixels in decode_tiles(vae, latent, core):
        if out is None:
            out = pixels.new_empty(pixels.shape[0], h * SCALE, w * SCALE)
        out[:, y0:y1, x0:x1] = pixels[:, y0 - r0:y1 - r0, x0 - c0:x1 - c0]
    return out


@torch.inference_mode()
def decode_window(vae, latent: torch.Tensor, box: tuple[int, int, int, int],
                  halo: int = DECODER_HALO) -> torch.Tensor:
    """Pixels of the latent box (y0, y1, x0, x1) (latent units) at the cost of the box and its
    halo: exactly as a whole decode would give them with the default halo, close with less."""
    y0, y1, x0, x1 = box
    if not is_tileable(vae):
        return vae.decode(latent[None])[0][:, y0 * SCALE:y1 * SCALE, x0 * SCALE:x1 * SCALE]
    h, w = latent.shape[-2:]
    a0, a1 = max(0, y0 - halo), min(h, y1 + halo)
    b0, b1 = max(0, x0 - halo), min(w, x1 + halo)
    pixels = vae.decode_tail(vae.decode_head(latent[None])[..., a0:a1, b0:b1])[0]
    top, left = (y0 - a0) * SCALE, (x0 - b0) * SCALE
    return pixels[:, top:top + (y1 - y0) * SCALE, left:left + (x1 - x0) * SCALE]
