"""Focus stacks with a ground truth, made from one photograph: where the rendered test split's
Blender defocus and real stacks' missing ground truth leave a question open, a photograph is the
answer every frame must give back. Two defocus models, neither the renderer the model trained on:

- `depth`: a smooth random depth map; each pixel blurred by a Gaussian whose sigma grows with its
  depth's distance from the frame's focus, by normalised convolution over depth layers. No
  occlusion: consecutive frames share detail, as a stack shot for stacking does.
- `layers`: occluding planes, a background and 1-4 blobs in front of it, each a soft-edged cut-out
  of the photograph. Each frame is focused on one plane; the others are blurred by the thin lens'
  disc (circle of confusion proportional to |1/depth - 1/focus|) and composited back to front, so a
  near plane out of focus spills a veil over what lies behind it, as it does in a camera.

Frames are made at SUPERSAMPLE times the size and reduced (a camera forms them optically; only
a method's own resampling should show), stored as 8-bit.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from vaeedof.assets.photographic import open_photo, sharpest_crop
from vaeedof.errors import VaeedofError
from vaeedof.logs import progress

SUPERSAMPLE = 2
DEPTH_LAYERS = 16
CROP_FRACTION = [0.4, 0.9]  # side of the crop, as a fraction of the photograph's short side
CROP_CANDIDATES = 6
MASK_COVER = (0.15, 0.35)  # the share of the frame a near plane covers
MASK_EDGE_PX = 0.7  # softness of a plane's cut-out edge (output pixels): matted, not aliased


def held_out_photos(folder: Path, params: dict) -> list[tuple[str, object]]:
    """(stem, image) of every held-out photograph (`assets.photographic.test_photos`) in `folder`."""
    photos = []
    for stem in params["assets"]["photographic"]["test_photos"]:
        path = Path(folder) / f"{stem}.jpg"
        if not path.exists():
            raise VaeedofError(f"{path}: held-out photograph not found (assets.photographic.test_photos)")
        photos.append((stem, open_photo(path)))
    return photos


def held_out_crops(folder: Path, params: dict, crops: int, stream: int):
    """(name, photograph, rng) for `crops` stacks of every held-out photograph, each with its own
    generator seeded by (seed, stream, photograph, crop): a script's stacks stay the same however
    many it makes, and two scripts (other streams) draw different ones."""
    for index, (stem, photo) in enumerate(progress(held_out_photos(folder, params), desc="photographs")):
        for crop in range(crops):
            yield f"{stem[:24]}-{crop}", photo, np.random.default_rng([params["seed"], stream, index, crop])


def depth_map(size: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth depth in [0, 1]: low-frequency noise plus a slope in a random direction."""
    noise = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), size / 8)
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:size, 0:size] / size
    depth = (noise - noise.mean()) / (noise.std() + 1e-6) + 1.5 * (np.cos(angle) * x + np.sin(angle) * y)
    return ((depth - depth.min()) / (depth.max() - depth.min() + 1e-6)).astype(np.float32)


def _gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0.3 else image


def focus_frame(sharp: np.ndarray, depth: np.ndarray, focus: float, max_sigma: float) -> np.ndarray:
    """`depth` model: the photograph focused at depth `focus`, per depth layer a Gaussian blur,
    normalised."""
    layer = np.minimum((depth * DEPTH_LAYERS).astype(int), DEPTH_LAYERS - 1)
    total, weight = np.zeros_like(sharp), np.zeros(depth.shape, np.float32)
    for k in range(DEPTH_LAYERS):
        mask = (layer == k).astype(np.float32)
        if not mask.any():
            continue
        sigma = max_sigma * abs((k + 0.5) / DEPTH_LAYERS - focus)
        total += _gaussian(sharp * mask[..., None], sigma)
        weight += _gaussian(mask, sigma)
    return total / np.maximum(weight, 1e-6)[..., None]


def disc_kernel(radius: float) -> np.ndarray:
    """The thin lens' blur: a disc of `radius` px with an anti-aliased rim, summing to 1."""
    reach = int(np.ceil(radius + 0.5))
    y, x = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    kernel = np.clip(radius + 0.5 - np.hypot(x, y), 0, 1).astype(np.float32)
    return kernel / kernel.sum()


def disc_blur(image: np.ndarray, radius: float) -> np.ndarray:
    if radius < 0.5:  # under half a pixel the disc is the pixel itself
        return image
    return cv2.filter2D(image, -1, disc_kernel(radius), borderType=cv2.BORDER_REFLECT)


def layer_masks(size: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`count` plane masks, far to near: the background (everywhere), then blobs of thresholded
    smooth noise, each covering MASK_COVER of the frame, with soft edges."""
    masks = [np.ones((size, size), np.float32)]
    for _ in range(count - 1):
        noise = rng.random((size, size)).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), size / rng.uniform(6, 14))
        hard = (noise > np.quantile(noise, 1 - rng.uniform(*MASK_COVER))).astype(np.float32)
        masks.append(cv2.GaussianBlur(hard, (0, 0), MASK_EDGE_PX * SUPERSAMPLE))
    return masks


def blur_radii(depths: np.ndarray, focus: float, max_radius: float) -> np.ndarray:
    """Circle-of-confusion radii of planes at `depths` with the lens focused at `focus`: in
    proportion to |1/depth - 1/focus|, `max_radius` for the nearest plane seen from the farthest."""
    span = 1 / depths.min() - 1 / depths.max()
    return max_radius * np.abs(1 / depths - 1 / focus) / max(span, 1e-9)


def layered_frame(sharp: np.ndarray, masks: list[np.ndarray], depths: np.ndarray, focus: float,
                  max_radius: float) -> np.ndarray:
    """`layers` model: planes (far to near, `masks` and `depths` alike) composited back to front,
    each blurred by its disc: the nearer plane's blurred coverage veils what is behind it."""
    radii = blur_radii(depths, focus, max_radius)
    frame = disc_blur(sharp, radii[0])
    for mask, radius in zip(masks[1:], radii[1:], strict=True):
        cover = disc_blur(mask, radius)[..., None]
        frame = frame * (1 - cover) + disc_blur(sharp * mask[..., None], radius)
    return frame


def reduce(image: np.ndarray) -> np.ndarray:
    """From the SUPERSAMPLE-times size to the output size, by area."""
    return cv2.resize(image, (image.shape[1] // SUPERSAMPLE, image.shape[0] // SUPERSAMPLE),
                      interpolation=cv2.INTER_AREA)


def to_uint8_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float in [0, 1] -> (3, H, W) uint8, as a camera stores a frame."""
    stored = np.clip(pixels * 255 + 0.5, 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(stored)).permute(2, 0, 1)


def sharp_crop(photo, rng: np.random.Generator, size: int) -> np.ndarray:
    """The ground truth at SUPERSAMPLE times `size`: the sharpest of a few random crops, float."""
    crop = sharpest_crop(photo, rng, CROP_FRACTION, size * SUPERSAMPLE, CROP_CANDIDATES)
    return crop.astype(np.float32) / 255


def sweep_stack(photo, rng: np.random.Generator, size: int, frames: int, max_sigma: float
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(ground truth (3, size, size) float, frames (3, size, size) uint8 focused near to far) of one
    `depth` focal sweep: `frames` foci spread evenly over the depth map's range; `max_sigma` in
    output pixels."""
    sharp = sharp_crop(photo, rng, size)
    depth = depth_map(sharp.shape[0], rng)
    sweep = [to_uint8_tensor(reduce(focus_frame(sharp, depth, focus, max_sigma * SUPERSAMPLE)))
             for focus in np.linspace(0, 1, frames)]
    return torch.from_numpy(np.ascontiguousarray(reduce(sharp))).permute(2, 0, 1), sweep


def layered_stack(photo, rng: np.random.Generator, size: int, max_radius: float,
                  planes: tuple[int, int] = (2, 5)) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(ground truth (3, size, size) float, frames (3, size, size) uint8 focused near to far) of one
    `layers` stack of `planes` planes (inclusive range), one frame per plane; `max_radius` in
    output pixels."""
    sharp = sharp_crop(photo, rng, size)
    count = int(rng.integers(planes[0], planes[1] + 1))
    masks = layer_masks(sharp.shape[0], count, rng)
    depths = np.sort(rng.uniform(1.0, 10.0, count))[::-1]  # metres, far to near
    frames = [layered_frame(sharp, masks, depths, focus, max_radius * SUPERSAMPLE) for focus in depths[::-1]]
    gt = torch.from_numpy(np.ascontiguousarray(reduce(sharp))).permute(2, 0, 1)
    return gt, [to_uint8_tensor(reduce(frame)) for frame in frames]


def summary(rows: list[dict]) -> list[str]:
    """`run.py`: its rows (strings from its CSV, or numbers) as a markdown table,
    one line per method: mean PSNR and SSIM over the stacks it fused, on how many it failed (rows
    without scores; older CSVs have no such rows), and on how many its PSNR is above GFF's."""
    header = ["method", "stacks", "PSNR", "SSIM", "failed on", "PSNR above GFF's on"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    gff = {r["stack"]: float(r["psnr"]) for r in rows if r["method"] == "gff"}
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method and r["psnr"] not in (None, "")]
        failed = sum(r["method"] == method and r["psnr"] in (None, "") for r in rows)
        psnr = np.array([float(r["psnr"]) for r in mine])
        ssim = np.array([float(r["ssim"]) for r in mine])
        scores = f"{psnr.mean():.2f} | {ssim.mean():.4f}" if mine else "- | -"
        above = "-" if method == "gff" or not gff else \
            f"{sum(float(r['psnr']) > gff[r['stack']] for r in mine if r['stack'] in gff)} of {len(mine)}"
        lines.append(f"| {method} | {len(mine)} | {scores} | {failed} | {above} |")
    return lines
