"""Down-up resampling: everything above the lower rate's Nyquist frequency is removed (torchaudio, differentiable)."""

from __future__ import annotations

import math

import torchaudio.functional as AF

from defenses.base import Defense, fit_length_torch, positive


class Resample(Defense):
    r"""Down-up resampling through `rate` Hz (torchaudio): everything above `rate / 2` is removed.

    Paper: Yang et al., "Characterizing Audio Adversarial Examples Using Temporal Dependency", ICLR 2019

    Differentiable: yes · Random: no

    Arguments:
        rate (int): the lower rate, below the clips' own. Default: 8000.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> Resample(8000)(x, 16_000)
    """

    name = "resample"
    differentiable = True

    # torchaudio's polyphase kernel has one phase per step of the reduced ratio: 16000 -> 15999 Hz would build
    # 16000 x 15999 phases (gigabytes); rates whose reduced ratio needs more than this are refused
    MAX_PHASES = 1000

    def __init__(self, rate: int = 8000):
        self.rate = positive("resample rate", rate, int, hi=384_000)
        if self.rate < 1000:
            raise ValueError(f"resample rate must be within 1000-384000 Hz, got {self.rate}")

    def check(self, sample_rate):
        g = math.gcd(self.rate, sample_rate)
        if max(self.rate, sample_rate) // g > self.MAX_PHASES:
            raise ValueError(
                f"{self.spec}: {sample_rate} -> {self.rate} Hz reduces to {sample_rate // g}/{self.rate // g}; "
                f"choose a rate whose ratio to {sample_rate} Hz reduces to terms <= {self.MAX_PHASES} (e.g. 8000, 11025)"
            )

    def apply(self, x, sample_rate):
        if self.rate == sample_rate:
            return x
        return fit_length_torch(
            AF.resample(AF.resample(x, sample_rate, self.rate), self.rate, sample_rate), x.shape[-1]
        )
