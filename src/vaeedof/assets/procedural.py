"""Procedural assets generated from the seed: the offline default source.

Subjects are RGBA cut-outs with soft matte edges (some with fur-like fringes and holes) and
texture at every scale, so defocus is visible everywhere on a subject; backgrounds follow the 1/f
spectrum of photographs with man-made structure on top; HDRIs are sky- or studio-like.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .noise import colorize, pink_noise, random_palette


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Rich colour texture: colourised 1/f noise, stripes, dots and sharp polygons, fine grain."""
    palette = random_palette(rng, int(rng.integers(3, 6)))
    rgb = colorize(pink_noise(rng, size, size, exponent=rng.uniform(1.4, 1.8)), palette)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for _ in range(int(rng.integers(1, 4))):
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(0.04, 0.15)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
        stripes = (np.sin(2 * np.pi * phase) > rng.uniform(-0.5, 0.5)).astype(np.float32)
        region = pink_noise(rng, size, size, exponent=2.0) > rng.uniform(0.4, 0.7)
        colour = random_palette(rng, 1)[0]
        mix = (stripes * region * rng.uniform(0.4, 0.9))[..., None]
        rgb = rgb * (1 - mix) + colour * mix
    for _ in range(int(rng.integers(10, 40))):
        cy, cx = rng.uniform(0, 1, 2)
        radius = rng.uniform(0.015, 0.06)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2) < radius**2
        rgb[disc] = random_palette(rng, 1)[0]
    # Shading detail with the 1/f spectrum of photographs (white-noise grain would be
    # unnatural, and no VAE reproduces it).
    shading = pink_noise(rng, size, size, exponent=1.5)[..., None]
    rgb = rgb * (0.75 + 0.5 * shading)
    return np.clip(rgb, 0.0, 1.0)


def _silhouette_distance(rng: np.random.Generator, size: int) -> np.ndarray:
    """Signed distance-like field (pixels, negative inside) of an organic multi-lobed shape."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    inside = np.full((size, size), np.inf, dtype=np.float32)
    lobes = int(rng.integers(1, 4))
    for lobe in range(lobes):
        spread = 0.0 if lobe == 0 else 0.18
        cy, cx = (0.5 + rng.uniform(-spread, spread, 2)) * size
        base = (rng.uniform(0.26, 0.36) if lobe == 0 else rng.uniform(0.14, 0.24)) * size
        angle = np.arctan2(yy - cy, xx - cx)
        radius = np.full_like(angle, base)
        for k in range(2, 9):
            radius += base * rng.normal(0, 0.25 / k) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
        distance = np.hypot(yy - cy, xx - cx) - radius
        inside = np.minimum(inside, distance)
    # Keep a margin so the soft edge never touches the image border.
    border = np.minimum.reduce([yy, xx, size - 1 - yy, size - 1 - xx])
    return np.maximum(inside, 0.04 * size - border)


def matte(rng: np.random.Generator, size: int) -> np.ndarray:
    """A float alpha matte (size x size, 0..1): an organic silhouette with a soft edge, sometimes
    a fur-like fringe of fractional strands, sometimes a hole the plane behind shows through."""
    distance = _silhouette_distance(rng, size)
    if rng.uniform() < 0.5:
        fringe = (pink_noise(rng, size, size, exponent=0.5) - 0.5) * rng.uniform(2, 6) * size / 64
        distance = distance + fringe
    if rng.uniform() < 0.4:
        cy, cx = rng.uniform(0.4, 0.6, 2) * size
        yy, xx = np.mgrid[0:size, 0:size]
        hole = rng.uniform(0.04, 0.08) * size - np.hypot(yy - cy, xx - cx)
        distance = np.maximum(distance, hole)
    softness = rng.uniform(0.8, 3.0) * max(size / 256, 0.5)
    return np.clip(0.5 - distance / (2 * softness), 0.0, 1.0)


def subject(rng: np.random.Generator, size: int) -> np.ndarray:
    """One RGBA uint8 subject of size x size: procedural texture cut out by `matte`."""
    alpha = matte(rng, size)
    rgb = _texture(rng, size)
    rgba = np.concatenate([rgb, alpha[..., None]], axis=-1)
    return (rgba * 255 + 0.5).astype(np.uint8)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A photo-like RGB uint8 background: textured land/sky or a cityscape of facades."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    sky_colour = random_palette(rng, 2)
    sky = sky_colour[0] * (1 - yy[..., None]) + sky_colour[1] * yy[..., None]
    clouds = pink_noise(rng, size, size, exponent=1.6)[..., None]
    sky = np.clip(sky * 0.7 + clouds * 0.4, 0, 1)
    ground = _texture(rng, size)
    ridge = pink_noise(rng, 1, size, exponent=1.8)[0]
    horizon = rng.uniform(0.25, 0.6) + (ridge - 0.5) * rng.uniform(0.1, 0.4)
    rgb = np.where((yy > horizon[None, :])[..., None], ground, sky)
    if rng.uniform() < 0.5:
        # Buildings: sharp-edged facades with window grids (the paper uses LIU4K buildings).
        for _ in range(int(rng.integers(3, 12))):
            x0, width = rng.uniform(0, 0.9), rng.uniform(0.05, 0.25)
            top = rng.uniform(0.1, 0.7)
            facade = (xx >= x0) & (xx < x0 + width) & (yy >= top)
            colour = random_palette(rng, 2)
            rows, cols = rng.uniform(12, 40), rng.uniform(12, 40)
            windows = (np.sin(yy * rows * np.pi) > 0.3) & (np.sin(xx * cols * np.pi) > 0.2)
            block = np.where(windows[..., None], colour[1], colour[0])
            rgb = np.where(facade[..., None], block * (0.75 + 0.5 * clouds), rgb)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def hdri(rng: np.random.Generator, width: int) -> np.ndarray:
    """An equirectangular float32 RGB environment map (width x width/2), sky or studio."""
    height = width // 2
    theta = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height * np.pi  # 0 = zenith
    phi = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / width * 2 * np.pi
    if rng.uniform() < 0.6:
        zenith = np.array([0.35, 0.55, 1.0]) * rng.uniform(0.6, 1.4)
        horizon_colour = np.array([1.0, 0.95, 0.85]) * rng.uniform(0.8, 1.5)
        ground = random_palette(rng, 1)[0] * rng.uniform(0.2, 0.5)
        t = np.clip(theta / (np.pi / 2), 0, 1)[..., None]
        env = np.where(theta[..., None] < np.pi / 2, zenith * (1 - t) + horizon_colour * t,
                       np.broadcast_to(ground, (height, 1, 3)))
        env = np.broadcast_to(env, (height, width, 3)).copy()
        sun_theta, sun_phi = rng.uniform(0.2, 1.3), rng.uniform(0, 2 * np.pi)
        cos_angle = (np.cos(theta) * np.cos(sun_theta)
                     + np.sin(theta) * np.sin(sun_theta) * np.cos(phi - sun_phi))
        sun = np.exp((cos_angle - 1) / 2e-4) * rng.uniform(20, 80)
        env += sun[..., None] * np.array([1.0, 0.95, 0.85])
    else:
        env = np.full((height, width, 3), rng.uniform(0.05, 0.2), dtype=np.float64)
        for _ in range(int(rng.integers(2, 5))):
            box_theta, box_phi = rng.uniform(0.3, 1.6), rng.uniform(0, 2 * np.pi)
            half_t, half_p = rng.uniform(0.1, 0.3), rng.uniform(0.1, 0.5)
            dphi = np.angle(np.exp(1j * (phi - box_phi)))
            box = (np.abs(theta - box_theta) < half_t) & (np.abs(dphi) < half_p)
            tint = 1.0 + rng.normal(0, 0.08, 3)
            env += box[..., None] * rng.uniform(3, 12) * tint
    return env.astype(np.float32)


def subject_image(rng: np.random.Generator, size: int) -> Image.Image:
    return Image.fromarray(subject(rng, size), mode="RGBA")


def background_image(rng: np.random.Generator, size: int) -> Image.Image:
    return Image.fromarray(background(rng, size), mode="RGB")
