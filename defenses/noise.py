"""Additive Gaussian noise at a set SNR per clip (randomised smoothing's cheap cousin; random, so EOT applies)."""

from __future__ import annotations

import torch

from defenses.base import Defense, seed_value


class GaussianNoise(Defense):
    r"""Additive Gaussian noise at `snr_db` per clip: randomised smoothing's cheap cousin.

    Paper: Cohen et al., "Certified Adversarial Robustness via Randomized Smoothing", ICML 2019

    Differentiable: yes · Random: yes (adaptive attacks average gradients over draws: EOT)

    Arguments:
        snr_db (float): signal-to-noise ratio in dB, -20 to 100. Default: 30.
        seed (int): the first draw; `reseed()` starts over. Default: 0.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> GaussianNoise(30)(x, 16_000)
    """

    name = "noise"
    differentiable = True
    random = True

    def __init__(self, snr_db: float = 30.0, seed: int = 0):
        if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float)) or not -20.0 <= snr_db <= 100.0:
            raise ValueError(f"noise SNR must be within -20 and 100 dB, got {snr_db!r}")
        self.snr_db, self.seed = float(snr_db), seed_value(seed)
        self.reseed()

    def apply(self, x, sample_rate):
        power = x.detach().pow(2).mean(dim=-1, keepdim=True).clamp_min(1e-12)
        noise = torch.randn(x.shape, generator=self._gen).to(x)
        return x + noise * torch.sqrt(power / 10 ** (self.snr_db / 10))
