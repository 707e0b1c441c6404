"""Training-time augmentation of cached latents: a random number of inputs (1..available, with
probability `subset_probability`, else all of them) in random order, filled to max_inputs by
duplication, and one of the 8 flips/rotations applied consistently to a sample's inputs and
target. Latent flips approximate image flips (the VAE is nearly equivariant); the cache itself
is never augmented. The pixel patches the latents came from (for the hybrid loss) get exactly the
same choices."""

from __future__ import annotations

import torch


def _dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, k, dims=(-2, -1))
    return x.flip(-1) if flip else x


def _choice(available: int, total: int, max_inputs: int, generator: torch.Generator,
            subset_probability: float) -> tuple[torch.Tensor, int, bool]:
    """Which inputs fill the max_inputs slots, and the flip/rotation."""
    order = torch.randperm(total, generator=generator)
    count = available
    if float(torch.rand((), generator=generator)) < subset_probability:
        count = int(torch.randint(1, available + 1, (1,), generator=generator))
    extra = torch.randint(0, count, (max_inputs - count,), generator=generator)
    slots = torch.cat([order[:count], order[:count][extra]])
    k = int(torch.randint(0, 4, (1,), generator=generator))
    flip = bool(torch.randint(0, 2, (1,), generator=generator))
    return slots, k, flip


def augment(batch: torch.Tensor, max_inputs: int, generator: torch.Generator,
            enabled: bool = True, subset_probability: float = 1.0,
            pixels: torch.Tensor | None = None):
    """(B, available + 1, C, h, w), GT last -> inputs (B, max_inputs, C, h, w), target (B, C, h, w).
    With `pixels` (B, available + 1, 3, H, W): also the pixel inputs and target, augmented alike."""
    available = min(batch.shape[1] - 1, max_inputs)
    picks = []
    for _ in range(len(batch)):
        if enabled:
            picks.append(_choice(available, batch.shape[1] - 1, max_inputs, generator,
                                 subset_probability))
        else:  # all inputs in order, filled cyclically, no flips
            picks.append((torch.arange(max_inputs) % available, 0, False))

    def apply(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = list(zip(tensor, picks, strict=True))
        inputs = [_dihedral(sample[slots], k, flip) for sample, (slots, k, flip) in pairs]
        targets = [_dihedral(sample[-1], k, flip) for sample, (_, k, flip) in pairs]
        return torch.stack(inputs), torch.stack(targets)

    if pixels is None:
        return apply(batch)
    return (*apply(batch), *apply(pixels))
