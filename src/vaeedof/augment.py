"""Training-time augmentation of cached latents: a random number of inputs (1..available, with
probability `subset_probability`, else all of them) in random order, filled to max_inputs by
duplication, and one of the 8 flips/rotations applied consistently to a sample's inputs and
target. Latent flips approximate image flips (the VAE is nearly equivariant); the cache itself
is never augmented."""

from __future__ import annotations

import torch

from .model import fill_inputs


def _dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, k, dims=(-2, -1))
    return x.flip(-1) if flip else x


def augment(batch: torch.Tensor, max_inputs: int, generator: torch.Generator,
            enabled: bool = True, subset_probability: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, available + 1, C, h, w), GT last -> inputs (B, max_inputs, C, h, w), target (B, C, h, w)."""
    inputs, targets = [], []
    available = min(batch.shape[1] - 1, max_inputs)
    for sample in batch:
        if not enabled:  # all inputs in order, filled cyclically, no flips
            inputs.append(fill_inputs(sample[None, :available], max_inputs)[0])
            targets.append(sample[-1])
            continue
        order = torch.randperm(batch.shape[1] - 1, generator=generator)
        count = available
        if float(torch.rand((), generator=generator)) < subset_probability:
            count = int(torch.randint(1, available + 1, (1,), generator=generator))
        chosen = fill_inputs(sample[order[:count]][None], max_inputs, generator)[0]
        k = int(torch.randint(0, 4, (1,), generator=generator))
        flip = bool(torch.randint(0, 2, (1,), generator=generator))
        inputs.append(_dihedral(chosen, k, flip))
        targets.append(_dihedral(sample[-1], k, flip))
    return torch.stack(inputs), torch.stack(targets)
