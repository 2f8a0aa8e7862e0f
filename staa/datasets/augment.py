"""Random, differentiable changes of a waveform batch that a model should be indifferent to: input diversity (Xie et
al., 2019, in its audio form), so that a perturbation made through them does not rest on one model's exact view of
the clip. MI-FGSM's `diversity` and the generator's `diversity` training option both draw from here."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def resample_shift(x: torch.Tensor, gen: torch.Generator, lo: float = 0.9, hi: float = 1.1) -> torch.Tensor:
    """`x` `[N, T]` resampled by one factor drawn from [lo, hi] (tempo and pitch together, linear interpolation)
    and shifted by a random offset, cropped or zero-padded back to T; the gradient flows through it."""
    n = x.shape[-1]
    size = max(2, round(n * float(torch.empty(1).uniform_(lo, hi, generator=gen))))
    y = F.interpolate(x[:, None], size=size, mode="linear", align_corners=False)[:, 0]
    offset = int(torch.randint(abs(size - n) + 1, (1,), generator=gen))
    return y[:, offset : offset + n] if size >= n else F.pad(y, (offset, n - size - offset))
