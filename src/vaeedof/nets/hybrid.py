"""Hybrid output: every pixel is a convex mix of the input pixels, so whatever an input holds in
focus passes through exactly; the VAE-decoded fusion steers the mix but is not mixed in.

The mix logits come from the Fusion U-Net at latent resolution (one per input slot) and are
brought to full resolution edge-aware: bilinear up-sampling gives the coarse decision, and two
pixel-level terms sharpen it at object edges:
- agreement: how far each input is, in a small window, from the decoded all-in-focus estimate
  (an in-focus input agrees with it, a blurred one does not);
- focus: the local energy of each input's Laplacian (defocus removes it), above a floor so that
  flat regions and render noise do not vote. It catches fine texture that the VAE does not
  reproduce and so cannot arbitrate by agreement (grass, hair, distant foliage in photographs).
- reblur: whether an input is, locally, a blurred copy of another (then the other is the sharper
  one there). The focus term is fooled beside strong edges: defocus spreads an edge's energy into
  its surroundings, where the in-focus input is flat, so the blurred input wins a halo around the
  edge. Blurring the in-focus input reproduces that spread, blurring the defocused one does not
  restore the edge, and that asymmetry holds right up to the edge. Noise and flat regions, the same
  in both, give no vote; nor do places where no blur explains the difference (content that moved
  between frames that could not be aligned).

The head's last mix channel once weighted the decoded image itself; on the rendered test splits
that slot added at most 0.02 dB and on real photographs it cost sharpness (Q^AB/F), so it is
left unused (kept so that existing checkpoints load).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..params import schema_defaults

# Below this mean squared difference (about the render noise) two windows count as equal.
DISTANCE_FLOOR = 1e-4
FOCUS_SIGMA = 2.0  # px: the Gaussian window of the focus and reblur measures
# Blur radii the reblur test tries (px, Gaussian sigma): defocus differences between two inputs of
# a stack, from a Lytro pair's few pixels to the rendered scenes' large blur.
REBLUR_SIGMAS = (1.0, 1.4, 2.0, 2.8, 4.0, 5.7, 8.0, 11.3, 16.0)
REBLUR_WINDOW = 1  # half-resolution px: radius of the box window of the reblur test's differences
REBLUR_FLOOR = 1e-5  # mean squared difference that counts as an exact match (below render noise)
CONFIDENCE_FLOOR = 1e-3  # the least a pixel's vote counts in the selection's smoothing
_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


@dataclass(frozen=True)
class HybridSettings:
    """How the mix is brought to pixels: `fusion.hybrid_*` of the parameters, stored with every
    exported model (`hybrid_*` of its JSON; missing keys take the parameter defaults)."""

    radius: int
    focus_weight: float
    focus_floor: float
    reblur_weight: float
    smoothing: float

    KEYS = {"radius": "hybrid_radius", "focus_weight": "hybrid_focus_weight",
            "focus_floor": "hybrid_focus_floor", "reblur_weight": "hybrid_reblur_weight",
            "smoothing": "hybrid_smoothing"}

    @classmethod
    def of(cls, mapping: dict) -> HybridSettings:
        defaults = schema_defaults()["fusion"]
        return cls(**{field: mapping.get(key, defaults[key]) for field, key in cls.KEYS.items()})

    def as_dict(self) -> dict:
        return {key: getattr(self, field) for field, key in self.KEYS.items()}


DEFAULT_SETTINGS = HybridSettings.of({})


def window_distance(inputs: torch.Tensor, decoded: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, n, 3, H, W), (B, 3, H, W) -> (B, n, H, W): mean squared difference over a
    (2 radius + 1)^2 window (box filter; windows shrink at the border)."""
    squared = (inputs - decoded[:, None]).pow(2).mean(dim=2)
    return squared if radius == 0 else _box_mean(squared, radius)


def _box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2 radius + 1)^2 window of (N, C, H, W); windows shrink at the border."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W), reflected at the border."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-taps.pow(2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    mode = "reflect" if min(x.shape[-2:]) > radius else "replicate"
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode=mode), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode=mode), kernel.view(1, 1, -1, 1))


def focus_energy(inputs: torch.Tensor, sigma: float = FOCUS_SIGMA) -> torch.Tensor:
    """(B, n, 3, H, W) -> (B, n, H, W): the squared Laplacian of each grey input, averaged over a
    Gaussian window."""
    b, n, _, h, w = inputs.shape
    grey = inputs.float().mean(dim=2).reshape(b * n, 1, h, w)
    kernel = torch.tensor(_LAPLACIAN, dtype=grey.dtype, device=grey.device).view(1, 1, 3, 3)
    laplacian = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernel)
    return _gaussian_blur(laplacian.pow(2), sigma).reshape(b, n, h, w)


def distinct_slots(slots: torch.Tensor) -> tuple[list[int], list[int]]:
    """(n, H, W) -> the first slot of each distinct image, and for each slot its image's index."""
    firsts: list[int] = []
    index = []
    for slot in range(len(slots)):
        same = next((k for k, first in enumerate(firsts) if torch.equal(slots[slot], slots[first])), None)
        if same is None:
            firsts.append(slot)
            same = len(firsts) - 1
        index.append(same)
    return firsts, index


def _reblur_votes(grey: torch.Tensor, reduction: int) -> torch.Tensor:
    """(k, H, W) distinct images, `reduction` times smaller than the inputs -> (k, H, W) mean over
    the others of log D(other -> this) - log D(this -> other), D(a -> b): the windowed squared
    difference between b and a blurred copy of a, at the best of REBLUR_SIGMAS (input pixels);
    each vote weighted by the share of the pair's difference that the better blur explains."""
    k, h, w = grey.shape
    if k < 2:
        return torch.zeros_like(grey)
    first, second = (~torch.eye(k, dtype=torch.bool, device=grey.device)).nonzero(as_tuple=True)
    pairs = torch.full((k, k), -1, dtype=torch.long, device=grey.device)
    pairs[first, second] = torch.arange(len(first), device=grey.device)
    swapped = pairs[second, first]  # the pair (j, i) of each pair (i, j)

    def windowed(squared: torch.Tensor) -> torch.Tensor:  # (pairs, H, W)
        return _box_mean(squared[:, None], REBLUR_WINDOW)[:, 0]

    best = None
    for sigma in REBLUR_SIGMAS:
        blurred = _gaussian_blur(grey[:, None], sigma / reduction)[:, 0]
        distance = windowed((grey[first] - blurred[second]).pow_(2))  # pair (i, j): i vs j blurred
        best = distance if best is None else torch.minimum(best, distance, out=best)
    log_distance = torch.log(best + REBLUR_FLOOR)  # (i, j) small: i is a blurred copy of j
    # Weighted by how much of the two inputs' local difference a blur explains: near 1 where one
    # is a blurred copy of the other, near 0 where it is not (content that moved, other tones),
    # where the log ratio would vote at random.
    difference = windowed((grey[first] - grey[second]).pow_(2))
    explained = (1 - torch.minimum(best, best[swapped]) / (difference + REBLUR_FLOOR)).clamp_(min=0)
    votes = (log_distance - log_distance[swapped]) * explained
    return grey.new_zeros(k, h, w).index_add_(0, first, votes) / (k - 1)


def reblur_evidence(inputs: torch.Tensor, reduction: int = 2) -> torch.Tensor:
    """(B, n, 3, H, W) -> (B, n, H, W): positive where an input is sharper than the others of its
    stack (see the module doc). Slots that repeat an input (stacks filled to max_inputs) neither
    vote nor dilute the vote; the work is done once per distinct input. Measured at 1/`reduction`
    of the resolution (half: 4x less work; regions start at multiples of 8, so tiles stay exact;
    the fast path takes large frames' at their network view's scale times that)."""
    h, w = inputs.shape[-2:]
    grey = inputs.float().mean(dim=2)
    small = F.avg_pool2d(grey, reduction, ceil_mode=True)
    out = []
    for sample, full in zip(small, grey, strict=True):
        firsts, index = distinct_slots(full)
        out.append(_reblur_votes(sample[firsts], reduction)[index])
    return F.interpolate(torch.stack(out), size=(h, w), mode="bilinear", align_corners=False)


def mix_weights(mix_logits: torch.Tensor, inputs: torch.Tensor, decoded: torch.Tensor | None,
                sharpness: torch.Tensor, settings: HybridSettings = DEFAULT_SETTINGS,
                distance: torch.Tensor | None = None, reblur_reduction: int = 2) -> torch.Tensor:
    """Latent-resolution logits (B, >= n, h, w) -> full-resolution weights (B, n, H, W) over the
    n inputs, summing to 1. `distance`: the agreement term's window distances (B, n, H, W) when
    measured elsewhere (at the decision scale: `vaeedof.fusion.engine`); `decoded` is then unused.
    `reblur_reduction`: the reblur term's (`reblur_evidence`)."""
    n = inputs.shape[1]
    size = inputs.shape[-2:]
    coarse = F.interpolate(mix_logits[:, :n].float(), size=size, mode="bilinear", align_corners=False)
    if distance is None:
        distance = window_distance(inputs, decoded, settings.radius)
    logits = coarse - sharpness * torch.log(distance + DISTANCE_FLOOR)
    if settings.focus_weight:
        logits = logits + settings.focus_weight * torch.log(focus_energy(inputs) + settings.focus_floor)
    if settings.reblur_weight:
        logits = logits + settings.reblur_weight * reblur_evidence(inputs, reblur_reduction)
    weights = torch.softmax(logits, dim=1)
    return smooth_selection(weights, inputs, settings.smoothing) if settings.smoothing else weights


def smooth_selection(weights: torch.Tensor, inputs: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, n, H, W) mix weights -> the same smoothed by normalized convolution: a Gaussian
    (`sigma` px) average of the neighbourhood's weights in which each pixel counts by its
    confidence, how far its weights are from an even mix of the distinct inputs (0) toward one
    input (1). Where the evidence is thin (smooth parts of a layer, or texture seen through a
    nearer layer's blur) the per-pixel decision flips between inputs in small blotches; the
    decided pixels around it outvote them, while at a focus boundary both sides are decided and
    the boundary stays within about sigma."""
    confidence = torch.stack([_confidence(sample, slots)
                              for sample, slots in zip(weights, inputs, strict=True)])
    h, w = weights.shape[-2:]

    def blur(x: torch.Tensor) -> torch.Tensor:
        return _gaussian_blur(x.reshape(-1, 1, h, w), sigma).reshape(x.shape)

    return blur(weights * confidence) / blur(confidence)


def _confidence(weights: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """(n, H, W) weights of the (n, 3, H, W) slots -> (1, H, W): the largest weight one distinct
    input gets (slots that repeat an input pooled), rescaled from an even mix (0) to certainty (1),
    above CONFIDENCE_FLOOR so that an undecided neighbourhood still gets its own mix."""
    firsts, index = distinct_slots(slots)
    k = len(firsts)
    if k < 2:
        return torch.ones_like(weights[:1])
    index = torch.tensor(index, device=weights.device)
    pooled = weights.new_zeros(k, *weights.shape[1:]).index_add_(0, index, weights)
    return ((pooled.max(dim=0, keepdim=True).values - 1 / k) / (1 - 1 / k)).clamp(min=CONFIDENCE_FLOOR)


def compose(mix_logits: torch.Tensor, inputs: torch.Tensor, decoded: torch.Tensor | None,
            sharpness: torch.Tensor, settings: HybridSettings = DEFAULT_SETTINGS,
            distance: torch.Tensor | None = None, reblur_reduction: int = 2) -> torch.Tensor:
    """The hybrid image (B, 3, H, W) from the inputs (B, n, 3, H, W), steered by the decoded fusion."""
    weights = mix_weights(mix_logits, inputs, decoded, sharpness, settings, distance, reblur_reduction)
    return (weights[:, :, None] * inputs).sum(dim=1)
