"""Amplitude quantisation to a lower bit depth: perturbations below half a step vanish."""

from __future__ import annotations

import torch

from defenses.base import Defense


class Quantize(Defense):
    r"""Amplitude quantisation to `bits` bits: a perturbation below half a step vanishes.

    Paper: Yang et al., ICLR 2019

    Differentiable: no (adaptive attacks pass the identity gradient back through it: BPDA) · Random: no

    Arguments:
        bits (int): bit depth, 2-24. Default: 8.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> Quantize(8)(x, 16_000)
    """

    name = "quantize"

    def __init__(self, bits: int = 8):
        if not isinstance(bits, int) or not 2 <= bits <= 24:
            raise ValueError(f"quantize bits must be an integer within 2-24, got {bits!r}")
        self.bits = bits

    def apply(self, x, sample_rate):
        scale = 2.0 ** (self.bits - 1)
        return (torch.round(x * scale) / scale).clamp(-1.0, 1.0)
