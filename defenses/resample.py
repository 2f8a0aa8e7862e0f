"""Down-up resampling: everything above the lower rate's Nyquist frequency is removed (torchaudio, differentiable)."""
from __future__ import annotations

import torchaudio.functional as AF

from defenses.base import Defense, fit_length_torch, positive


class Resample(Defense):
    name = "resample"
    differentiable = True

    def __init__(self, rate: int = 8000):
        self.rate = positive("resample rate", rate, int)

    @property
    def spec(self):
        return f"resample:{self.rate}"

    def apply(self, x, sample_rate):
        if self.rate == sample_rate:
            return x
        return fit_length_torch(AF.resample(AF.resample(x, sample_rate, self.rate), self.rate, sample_rate), x.shape[-1])
