"""Spectral-gating denoisers from noisereduce: the numpy one (non-stationary gate) and TorchGate (differentiable)."""

from __future__ import annotations

import noisereduce
import torch
import torch.nn.functional as F
from noisereduce.torchgate import TorchGate
from noisereduce.torchgate.utils import amp_to_db

from defenses.base import Defense, NumpyDefense, fit_length_torch


def _check_decrease(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"denoise strength (prop_decrease) must be within (0, 1], got {value}")
    return float(value)


class SpectralGate(NumpyDefense):
    r"""noisereduce's non-stationary spectral gate (numpy): time-frequency bins below a running noise estimate are attenuated.

    Paper: Sainburg et al., noisereduce, 2020

    Differentiable: no (adaptive attacks pass the identity gradient back through it: BPDA) · Random: no

    Arguments:
        prop_decrease (float): how much of a gated bin is removed, in [0, 1]. Default: 1.0.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> SpectralGate(1.0)(x, 16_000)
    """

    name = "spectral_gate"

    def __init__(self, prop_decrease: float = 1.0):
        self.prop_decrease = _check_decrease(prop_decrease)

    def apply_clip(self, clip, sample_rate):
        if not clip.any():  # noisereduce returns NaN for digital silence (0 / 0 in its noise estimate)
            return clip
        return noisereduce.reduce_noise(clip, sample_rate, stationary=False, prop_decrease=self.prop_decrease)


def _smooth_along(x: torch.Tensor, kernel: torch.Tensor, dim: int) -> torch.Tensor:
    """`x` convolved with the odd-length `kernel` along `dim`, zero-padded, same size (conv2d's padding="same"),
    as a weighted sum of shifted copies: the kernels are short (33 and 7 taps at 16 kHz)."""
    half, n = kernel.numel() // 2, x.shape[dim]
    padded = F.pad(x.movedim(dim, -1), (half, half))
    out = torch.zeros_like(padded[..., :n])
    for i, weight in enumerate(kernel.tolist()):
        out.add_(padded[..., i : i + n], alpha=weight)
    return out.movedim(-1, dim)


class SeparableTorchGate(TorchGate):
    """noisereduce's stationary TorchGate, with its mask smoothing done as two 1-D convolutions.

    The smoothing filter is the outer product of a triangle over frequency and one over time; noisereduce applies
    it as one 33 x 7 single-channel conv2d (at 16 kHz), most of the gate's time on a CPU. Two 1-D passes give the
    same mask, to float rounding, in a fraction of the time (docs/experiments.md)."""

    def __init__(self, sr: int, prop_decrease: float = 1.0):
        super().__init__(sr, prop_decrease=prop_decrease)
        f = self.smoothing_filter[0, 0]
        # the filter sums to 1, so its row and column sums are its two factors
        self.register_buffer("freq_kernel", f.sum(1))
        self.register_buffer("time_kernel", f.sum(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window = torch.hann_window(self.win_length, device=x.device)
        stft = dict(
            n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length, center=True, window=window
        )
        X = torch.stft(x, return_complex=True, pad_mode="constant", **stft)
        mask = self.prop_decrease * (self._stationary_mask(amp_to_db(X)).to(x.dtype) - 1.0) + 1.0
        mask = _smooth_along(_smooth_along(mask, self.freq_kernel, 1), self.time_kernel, 2)
        return torch.istft(X * mask, **stft).to(x.dtype)


class TorchSpectralGate(Defense):
    r"""noisereduce's TorchGate (the stationary gate) in torch, so gradients pass through it.

    Differentiable: yes · Random: no

    Arguments:
        prop_decrease (float): how much of a gated bin is removed, in [0, 1]. Default: 1.0.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> TorchSpectralGate(1.0)(x, 16_000)
    """

    name = "torch_gate"
    differentiable = True

    def __init__(self, prop_decrease: float = 1.0):
        self.prop_decrease = _check_decrease(prop_decrease)
        self._gates: dict[int, TorchGate] = {}

    def apply(self, x, sample_rate):
        gate = self._gates.get(sample_rate)
        if gate is None:
            gate = self._gates[sample_rate] = SeparableTorchGate(sample_rate, prop_decrease=self.prop_decrease)
        n = x.shape[-1]
        # istft drops the last partial hop: pad by one FFT so every input sample comes back (and to the gate's minimum)
        y = gate.to(x.device)(F.pad(x, (0, max(gate.n_fft, 2 * gate.win_length + 1 - n))))
        return fit_length_torch(y, n)
