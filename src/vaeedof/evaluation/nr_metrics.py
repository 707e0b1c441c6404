"""No-reference fusion metrics for real stacks without ground truth, as MFIF papers report them on
Lytro and MFFW: Q^AB/F (Xydeas & Petrovic 2000), Q_Y (Yang et al. 2008) and NMI (Hossny et al.
2008). All three compare the fused image with its inputs on 8-bit luminance (0..255).

They are defined for two inputs A and B. For N inputs we use the forms that reduce exactly to
those for N = 2: Q^AB/F sums edge preservation over all inputs with the same edge-strength
weights; NMI is 4/N times the sum of MI(I,F)/(H(I)+H(F)) (2 * the pair sum for N = 2); Q_Y takes the
mean over all input pairs.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

# Q^AB/F sigmoid constants (Xydeas & Petrovic 2000): edge strength g, orientation alpha.
_GAMMA_G, _KAPPA_G, _SIGMA_G = 0.9994, -15.0, 0.5
_GAMMA_A, _KAPPA_A, _SIGMA_A = 0.9879, -22.0, 0.8


def luminance(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) float in [0, 1] (or (H, W)) -> float64 luminance 0..255 (ITU-R BT.601)."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    array = array.astype(np.float64)
    if array.ndim == 3:
        array = 0.299 * array[0] + 0.587 * array[1] + 0.114 * array[2]
    return array * 255.0


def _sobel(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    gx = cv2.Sobel(grey, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(grey, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    return np.hypot(gx, gy), np.arctan(gy / np.where(gx == 0, 1e-12, gx))


def qabf(inputs: list[np.ndarray], fused: np.ndarray) -> float:
    """Q^AB/F: how much of the inputs' edge strength and orientation the fusion keeps (0..1),
    weighted by each input's edge strength."""
    g_f, a_f = _sobel(fused)
    numerator = denominator = 0.0
    for grey in inputs:
        g_i, a_i = _sobel(grey)
        ratio = np.where(g_i > g_f, g_f / np.maximum(g_i, 1e-12), g_i / np.maximum(g_f, 1e-12))
        ratio = np.where((g_i == 0) & (g_f == 0), 1.0, ratio)
        angle = 1.0 - np.abs(a_i - a_f) / (np.pi / 2)
        q_g = _GAMMA_G / (1.0 + np.exp(_KAPPA_G * (ratio - _SIGMA_G)))
        q_a = _GAMMA_A / (1.0 + np.exp(_KAPPA_A * (angle - _SIGMA_A)))
        numerator += float((q_g * q_a * g_i).sum())
        denominator += float(g_i.sum())
    return numerator / denominator if denominator > 0 else 1.0


def _entropy(histogram: np.ndarray) -> float:
    p = histogram[histogram > 0] / histogram.sum()
    return float(-(p * np.log2(p)).sum())


def _mutual_information(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """MI(a, b), H(a), H(b) from 256-bin histograms of 0..255 values."""
    ia = np.clip(a, 0, 255).astype(np.int64)
    ib = np.clip(b, 0, 255).astype(np.int64)
    joint = np.bincount((ia * 256 + ib).ravel(), minlength=256 * 256).reshape(256, 256).astype(np.float64)
    h_a, h_b = _entropy(joint.sum(1)), _entropy(joint.sum(0))
    return h_a + h_b - _entropy(joint.ravel()), h_a, h_b


def nmi(inputs: list[np.ndarray], fused: np.ndarray) -> float:
    """Normalised mutual information Q_MI (Hossny et al.): 2 * sum MI(I,F)/(H(I)+H(F)) for two
    inputs; 4/N times the sum for N."""
    total = 0.0
    for grey in inputs:
        mi, h_i, h_f = _mutual_information(grey, fused)
        total += mi / (h_i + h_f) if h_i + h_f > 0 else 0.0
    return 4.0 / len(inputs) * total


def _ssim_maps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SSIM map of x and y (7x7 Gaussian window, sigma 1.5, L = 255) and the local variances."""
    import cv2

    def blur(z):
        return cv2.GaussianBlur(z, (7, 7), 1.5, borderType=cv2.BORDER_REFLECT)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx = np.maximum(blur(x * x) - mx * mx, 0)
    vy = np.maximum(blur(y * y) - my * my, 0)
    cov = blur(x * y) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return ssim, vx, vy


def _qy_pair(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    s_af, v_a, _ = _ssim_maps(a, fused)
    s_bf, v_b, _ = _ssim_maps(b, fused)
    s_ab = _ssim_maps(a, b)[0]
    weight = np.where(v_a + v_b > 0, v_a / np.maximum(v_a + v_b, 1e-12), 0.5)
    score = np.where(s_ab >= 0.75, weight * s_af + (1 - weight) * s_bf, np.maximum(s_af, s_bf))
    return float(score.mean())


def qy(inputs: list[np.ndarray], fused: np.ndarray) -> float:
    """Q_Y (Yang et al.): where A and B agree (local SSIM(A,B) >= 0.75) the variance-weighted
    SSIM of each with the fusion, elsewhere the larger of the two; averaged over the image (and,
    for N inputs, over all pairs)."""
    pairs = list(itertools.combinations(range(len(inputs)), 2))
    return float(np.mean([_qy_pair(inputs[i], inputs[j], fused) for i, j in pairs]))


METRICS = {"qabf": qabf, "qy": qy, "nmi": nmi}


def no_reference_scores(stack: list[torch.Tensor], fused: torch.Tensor) -> dict[str, float]:
    """Every no-reference metric of one fusion of one stack."""
    inputs = [luminance(image) for image in stack]
    out = luminance(fused)
    return {name: fn(inputs, out) for name, fn in METRICS.items()}
