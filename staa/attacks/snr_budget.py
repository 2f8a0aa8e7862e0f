"""A budget stated as a signal-to-noise ratio, as speech attack toolkits state it (robust_speech's `--snr`): per clip,
eps = RMS(x) * 10^(-snr / 20), so a loud clip and a quiet one are perturbed equally audibly. A fixed eps means
30 dB on a loud clip and 10 dB on a quiet one.

Any l-inf attack takes it: `SNRBudget` runs the attack built at each clip's eps. Clips are grouped on a grid of
`STEP_DB` (each eps rounded down onto it, so a clip's l-inf budget is never above its SNR's and the SNR bound lies
within STEP_DB of the one asked for), and each group is one batch of the attack as built for that eps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from staa.attacks.base import Attack

STEP_DB = 0.1
SNR_RANGE = (-20.0, 120.0)


def check_snr(snr: float) -> float:
    lo, hi = SNR_RANGE
    if isinstance(snr, bool) or not isinstance(snr, (int, float)) or not lo <= snr <= hi:
        raise ValueError(f"snr must be a number of dB within {lo:g}-{hi:g}, got {snr!r}")
    return float(snr)


def snr_eps(x: torch.Tensor, snr: float) -> torch.Tensor:
    """Per clip of `x` `[B, T]`, the l-inf budget of an SNR of `snr` dB, rounded down onto the STEP_DB grid and kept
    within (0, 1] (a silent clip gets the smallest budget the attacks accept, 1e-6)."""
    rms = x.detach().double().pow(2).mean(dim=-1).sqrt()
    level = 20 * torch.log10(rms.clamp_min(1e-300)) - snr
    level = torch.floor(level / STEP_DB + 1e-9) * STEP_DB
    return torch.pow(10.0, level / 20).clamp(1e-6, 1.0)


class SNRBudget(Attack):
    """`make(eps)`'s attack with a per-clip eps from the SNR `snr` (dB); it keeps the built attack's kind and norm.

    Args:
        model (nn.Module): the victim (for the labels and the count of its passes).
        make (callable): eps -> the attack at that l-inf budget.
        cls (type): the attack's class, whose `kind`, `norm`, `gradient` and `adaptive` this one takes.
        snr (float): the budget, in dB of the clip's power over the perturbation's l-inf bound squared.
    """

    name = "snr_budget"

    def __init__(self, model: nn.Module, make: Callable[[float], Attack], cls: type[Attack], snr: float, **kw):
        super().__init__(model, **kw)
        self.make, self.snr = make, check_snr(snr)
        self.kind, self.norm, self.gradient, self.adaptive = cls.kind, cls.norm, cls.gradient, cls.adaptive
        self.name = f"{cls.name}@{self.snr:g}dB"
        self._built: dict[float, Attack] = {}

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        eps = snr_eps(x, self.snr)
        out = x.clone()
        for value in torch.unique(eps).tolist():
            group = (eps == value).nonzero()[:, 0]
            key = round(value, 12)
            if key not in self._built:  # attacks that keep state between calls (seeds, caches) keep it per budget
                self._built[key] = self.make(float(value))
            out[group] = self._built[key](x[group], y[group])
        return out
