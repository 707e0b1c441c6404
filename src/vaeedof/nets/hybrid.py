"""Hybrid output: exact input pixels where an input is in focus, the VAE-decoded fusion only where
no input holds the information.

Per pixel, the output is a convex mix of the inputs and the decoded image. The mix logits come
from the Fusion U-Net at latent resolution (one per input slot, one for the decoded image) and
are brought to full resolution edge-aware: bilinear up-sampling gives the coarse decision, and a
pixel-level term guided by the inputs sharpens it at object edges, namely how far each input is,
in a small window, from the decoded all-in-focus estimate (an in-focus input agrees with it, a
blurred one does not). The decoded image's logit has no such term: it wins where the network
says no input is right (occlusion boundaries, defocus spread around foreground objects).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Below this mean squared difference (about the render noise) two windows count as equal.
DISTANCE_FLOOR = 1e-4


def window_distance(inputs: torch.Tensor, decoded: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, n, 3, H, W), (B, 3, H, W) -> (B, n, H, W): mean squared difference over a
    (2 radius + 1)^2 window (box filter; windows shrink at the border)."""
    squared = (inputs - decoded[:, None]).pow(2).mean(dim=2)
    if radius == 0:
        return squared
    return F.avg_pool2d(squared, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def mix_weights(mix_logits: torch.Tensor, inputs: torch.Tensor, decoded: torch.Tensor,
                sharpness: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Latent-resolution logits (B, n + 1, h, w) -> full-resolution weights (B, n + 1, H, W)
    summing to 1: n inputs, then the decoded image."""
    n = inputs.shape[1]
    size = decoded.shape[-2:]
    coarse = F.interpolate(mix_logits.float(), size=size, mode="bilinear", align_corners=False)
    distance = window_distance(inputs, decoded, radius)
    guided = coarse[:, :n] - sharpness * torch.log(distance + DISTANCE_FLOOR)
    return torch.softmax(torch.cat([guided, coarse[:, n:]], dim=1), dim=1)


def compose(mix_logits: torch.Tensor, inputs: torch.Tensor, decoded: torch.Tensor,
            sharpness: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """The hybrid image (B, 3, H, W) from the inputs (B, n, 3, H, W) and the decoded fusion."""
    weights = mix_weights(mix_logits, inputs, decoded, sharpness, radius)
    n = inputs.shape[1]
    return (weights[:, :n, None] * inputs).sum(dim=1) + weights[:, n:] * decoded
