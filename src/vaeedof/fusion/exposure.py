"""Exposure differences between the frames of a stack, told apart from defocus: an exposure change
is one gain everywhere, while the light defocus moves around (across the frame's edge too, from
what only a blurred frame sees) changes local means from place to place. `vaeedof.fusion.align`
matches the first and leaves the second alone (a gain read from it would tint the frame)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..images import as_float

SMOOTHING = 0.015  # Gaussian sigma of the comparison, a fraction of the thumbnail's side
SPREAD = 0.05  # log-ratio interquartile range above which a gain is not one exposure


def thumbnail(image: torch.Tensor, side: int = 256) -> tuple[np.ndarray, float]:
    """(H, W, 3) float copy at most `side` px on its longer side, and the factor it was shrunk by."""
    import cv2

    pixels = as_float(image).permute(1, 2, 0).numpy()
    factor = min(1.0, side / max(pixels.shape[:2]))
    size = (max(1, round(pixels.shape[1] * factor)), max(1, round(pixels.shape[0] * factor)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), factor


def gain_and_spread(frame: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
    """Per channel, the gain taking a (warped, smoothed) frame to the target, and how uniform it
    is: the median and the largest interquartile range of the local log ratios, where both are
    neither dark nor clipped. An exposure change is one gain everywhere; defocus moves light
    around (across the frame's edge too, from what only a blurred frame sees), so its ratios
    vary from place to place."""
    a, b = frame.reshape(-1, 3), target.reshape(-1, 3)
    valid = ((a > 0.02) & (a < 0.98) & (b > 0.02) & (b < 0.98)).all(1)
    if valid.sum() < 64:
        return np.ones(3), math.inf
    ratios = np.log(b[valid]) - np.log(a[valid])
    low, median, high = np.percentile(ratios, [25, 50, 75], axis=0)
    return np.exp(median), float((high - low).max())


def frame_gains(warped: list[np.ndarray], target: np.ndarray) -> list[np.ndarray]:
    """Per frame (thumbnails warped onto the reference's) the per-channel gain matching it to the
    target over the inner 90 %, from local ratios of smoothed images; 1 where those ratios are
    not uniform (`gain_and_spread`)."""
    import cv2

    margin = max(2, round(0.05 * max(target.shape[:2])))
    inner = (slice(margin, -margin), slice(margin, -margin))
    sigma = SMOOTHING * max(target.shape[:2])
    smooth_target = cv2.GaussianBlur(target, (0, 0), sigma)[inner]
    gains = []
    for frame in warped:
        gain, spread = gain_and_spread(cv2.GaussianBlur(frame, (0, 0), sigma)[inner], smooth_target)
        gains.append(gain if spread <= SPREAD else np.ones(3))
    return gains
