"""Natural-image-like random fields: 1/f noise (the amplitude spectrum of photographs)."""

from __future__ import annotations

import numpy as np


def pink_noise(rng: np.random.Generator, height: int, width: int, exponent: float = 1.0,
               min_frequency: float = 1.0) -> np.ndarray:
    """A field whose amplitude spectrum falls as 1/f**exponent, scaled to [0, 1]."""
    fy = np.fft.fftfreq(height)[:, None] * height
    fx = np.fft.rfftfreq(width)[None, :] * width
    radius = np.sqrt(fx**2 + fy**2)
    amplitude = 1.0 / np.maximum(radius, min_frequency) ** exponent
    amplitude[0, 0] = 0.0
    phase = rng.uniform(0, 2 * np.pi, size=amplitude.shape)
    field = np.fft.irfft2(amplitude * np.exp(1j * phase), s=(height, width))
    field -= field.min()
    peak = field.max()
    return (field / peak if peak > 0 else field).astype(np.float32)


def random_palette(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` distinct, saturated-to-muted colours in [0, 1] (HSV sampled, converted to RGB)."""
    hues = (rng.uniform() + np.arange(count) / count + rng.normal(0, 0.05, count)) % 1.0
    saturation = rng.uniform(0.25, 0.95, count)
    value = rng.uniform(0.25, 0.95, count)
    return hsv_to_rgb(np.stack([hues, saturation, value], axis=-1))


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0] * 6.0, hsv[..., 1], hsv[..., 2]
    sector = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.zeros(hsv.shape, dtype=np.float64)
    for index, (r, g, b) in enumerate(table):
        mask = sector == index
        rgb[..., 0] = np.where(mask, r, rgb[..., 0])
        rgb[..., 1] = np.where(mask, g, rgb[..., 1])
        rgb[..., 2] = np.where(mask, b, rgb[..., 2])
    return rgb


def colorize(field: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map a [0, 1] field through a palette by piecewise-linear interpolation -> (H, W, 3)."""
    stops = np.linspace(0.0, 1.0, len(palette))
    return np.stack([np.interp(field, stops, palette[:, c]) for c in range(3)], axis=-1)
