"""Backward Pass Differentiable Approximation (Athalye et al., 2018): run the real defense forward and pass the
gradient straight through (identity backward) where the defense has no useful gradient."""
from __future__ import annotations

import torch

from defenses.base import Defense


def through(defense: Defense, x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """`defense(x)` whose gradient is the defense's own when it is differentiable, the identity otherwise."""
    if defense.differentiable:
        return defense(x, sample_rate)
    with torch.no_grad():
        y = defense(x.detach(), sample_rate)
    return x + (y - x).detach()
