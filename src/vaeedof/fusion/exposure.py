"""Exposure differences between the frames of a stack, told apart from defocus: an exposure change
is one gain everywhere, while the light defocus moves around (across the frame's edge too, from
what only a blurred frame sees) changes local means from place to place. `vaeedof.fusion.align`
matches the first and leaves the second alone (a gain read from it would tint the frame).

The gain is read where both frames are flat (the least textured share of each): there defocus
has little to move, so a frame focused elsewhere keeps its local means, while near edges the
ratios mix exposure with defocus (MFFW-04's frames: an interquartile range of 0.032 over the
whole frame, 0.006 where both are flat). It counts only when it is also the same across the
frame, cell by cell, and from dark to bright."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..images import as_float
from .options import MIN_GAIN

SMOOTHING = 0.015  # Gaussian sigma of the comparison, a fraction of the thumbnail's side
FLAT_SHARE = 0.4  # the least textured share of each frame in which gains are read
FLAT_WINDOW = 0.03  # Gaussian sigma of the texture measure, a fraction of the thumbnail's side
SPREAD = 0.05  # log-ratio interquartile range above which a gain is not one exposure
# The gain must be the same from place to place and from dark to bright: the median log ratios
# of the frame's CELLS x CELLS cells, and of its brightness levels (LEVEL-wide bins of the
# frame's grey value), may differ by at most GROUP_SPREAD. A camera's other tone curve is not
# one gain (MFFW-07: 0.92 in the mid-tones, 0.99 in the sky; one gain blotched the sky).
CELLS = 3
LEVEL = 0.1
GROUP_SPREAD = 0.03
MIN_CELLS = 5  # cells with enough flat pixels to compare
MIN_PIXELS = 32  # flat pixels a cell or a level needs to count


def thumbnail(image: torch.Tensor, side: int = 256) -> tuple[np.ndarray, float]:
    """(H, W, 3) float copy at most `side` px on its longer side, and the factor it was shrunk by."""
    import cv2

    pixels = as_float(image).permute(1, 2, 0).numpy()
    factor = min(1.0, side / max(pixels.shape[:2]))
    size = (max(1, round(pixels.shape[1] * factor)), max(1, round(pixels.shape[0] * factor)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), factor


def _texture(image: np.ndarray) -> np.ndarray:
    """(H, W) local gradient magnitude of the grey image, averaged over FLAT_WINDOW."""
    import cv2

    grey = np.ascontiguousarray(image.mean(axis=2, dtype=np.float32))
    magnitude = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    return cv2.GaussianBlur(magnitude, (0, 0), FLAT_WINDOW * max(image.shape[:2]))


def _group_spread(ratios: np.ndarray, valid: np.ndarray, groups: np.ndarray, fewest: int) -> float:
    """The largest difference between the groups' median log ratios (any channel), over groups
    (an integer label per pixel) holding MIN_PIXELS valid pixels; inf when fewer than `fewest` do."""
    picked = (ratios[valid & (groups == g)] for g in np.unique(groups[valid]))
    medians = [np.median(group, axis=0) for group in picked if len(group) >= MIN_PIXELS]
    if len(medians) < fewest:
        return math.inf
    medians = np.array(medians)
    return float((medians.max(axis=0) - medians.min(axis=0)).max())


def exposure_gain(frame: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    """Per channel, the gain taking a (warped) frame to the target: the median log ratio of the
    smoothed images where both frames are flat and neither dark nor clipped. None where it is not
    one gain everywhere: those ratios spread wider than SPREAD, the cells or the brightness levels
    disagree by more than GROUP_SPREAD, or too few pixels qualify."""
    import cv2

    sigma = SMOOTHING * max(target.shape[:2])
    a, b = cv2.GaussianBlur(frame, (0, 0), sigma), cv2.GaussianBlur(target, (0, 0), sigma)
    texture_a, texture_b = _texture(frame), _texture(target)
    flat = ((texture_a <= np.percentile(texture_a, 100 * FLAT_SHARE))
            & (texture_b <= np.percentile(texture_b, 100 * FLAT_SHARE)))
    valid = flat & ((a > 0.02) & (a < 0.98) & (b > 0.02) & (b < 0.98)).all(axis=2)
    ratios = np.log(np.maximum(b, 1e-6)) - np.log(np.maximum(a, 1e-6))
    rows, cols = np.indices(valid.shape)
    cells = rows * CELLS // valid.shape[0] * CELLS + cols * CELLS // valid.shape[1]
    levels = np.floor(a.mean(axis=2) / LEVEL).astype(int)
    if (valid.sum() < MIN_CELLS * MIN_PIXELS or _group_spread(ratios, valid, cells, MIN_CELLS) > GROUP_SPREAD
            or _group_spread(ratios, valid, levels, 1) > GROUP_SPREAD):
        return None
    low, median, high = np.percentile(ratios[valid], [25, 50, 75], axis=0)
    return np.exp(median) if (high - low).max() <= SPREAD else None


def frame_gains(warped: list[np.ndarray], target: np.ndarray) -> list[np.ndarray]:
    """Per frame (thumbnails warped onto the reference's) the per-channel gain matching it to the
    target over the inner 90 % (`exposure_gain`); 1 where that is not one exposure or is within
    MIN_GAIN of 1."""
    margin = max(2, round(0.05 * max(target.shape[:2])))
    inner = (slice(margin, -margin), slice(margin, -margin))
    gains = []
    for frame in warped:
        gain = exposure_gain(frame[inner], target[inner])
        gains.append(gain if gain is not None and abs(gain - 1).max() >= MIN_GAIN else np.ones(3))
    return gains
