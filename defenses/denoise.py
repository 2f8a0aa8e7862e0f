"""Spectral-gating denoisers from noisereduce: the numpy one (non-stationary gate) and TorchGate (differentiable)."""
from __future__ import annotations

import noisereduce
import torch.nn.functional as F
from noisereduce.torchgate import TorchGate

from defenses.base import Defense, NumpyDefense, fit_length_torch


def _check_decrease(value: float) -> float:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"denoise strength (prop_decrease) must be within (0, 1], got {value}")
    return float(value)


class SpectralGate(NumpyDefense):
    name = "spectral_gate"

    def __init__(self, prop_decrease: float = 1.0):
        self.prop_decrease = _check_decrease(prop_decrease)

    @property
    def spec(self):
        return f"spectral_gate:{self.prop_decrease:g}"

    def apply_clip(self, clip, sample_rate):
        return noisereduce.reduce_noise(clip, sample_rate, stationary=False, prop_decrease=self.prop_decrease)


class TorchSpectralGate(Defense):
    """noisereduce's TorchGate (stationary gate): the same idea in torch, so gradients pass through it."""

    name = "torch_gate"
    differentiable = True

    def __init__(self, prop_decrease: float = 1.0):
        self.prop_decrease = _check_decrease(prop_decrease)
        self._gates: dict[int, TorchGate] = {}

    @property
    def spec(self):
        return f"torch_gate:{self.prop_decrease:g}"

    def apply(self, x, sample_rate):
        gate = self._gates.get(sample_rate)
        if gate is None:
            gate = self._gates[sample_rate] = TorchGate(sample_rate, prop_decrease=self.prop_decrease)
        n = x.shape[-1]
        # istft drops the last partial hop: pad by one FFT so every input sample comes back (and to the gate's minimum)
        y = gate.to(x.device)(F.pad(x, (0, max(gate.n_fft, 2 * gate.win_length + 1 - n))))
        return fit_length_torch(y, n)
