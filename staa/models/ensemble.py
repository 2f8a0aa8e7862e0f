"""Several models as one: the mean of their logits (Dong et al., 2018), the surrogate that gradient attacks climb
when they are made on more than one model for transfer."""

from __future__ import annotations

import torch
from torch import nn


class Ensemble(nn.Module):
    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.models = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.models]).mean(0)
