"""Exponential moving average of model weights (the paper infers with the EMA).

The decay warms up as min(decay, (1 + step) / (10 + step)) so early averages are not dominated
by the random initialisation."""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(step: int, decay: float) -> float:
    return min(decay, (1.0 + step) / (10.0 + step))


def make_ema(model: nn.Module) -> nn.Module:
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    ema.eval()
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, step: int, decay: float) -> float:
    """ema <- d * ema + (1 - d) * model, in place; returns the decay d used."""
    d = ema_decay(step, decay)
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        ema_param.mul_(d).add_(param.detach(), alpha=1.0 - d)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)
    return d
