"""Classic denoising filters: FIR low-pass and median (torch, differentiable), Wiener (scipy)."""

from __future__ import annotations

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
import torchaudio

from defenses.base import Defense, NumpyDefense, positive


def _odd(name: str, size) -> int:
    size = positive(name, size, int, hi=1001)  # windows of up to 1001 samples (63 ms at 16 kHz)
    if size % 2 == 0:
        raise ValueError(f"{name} must be odd, got {size}")
    return size


class LowPass(Defense):
    r"""Linear-phase windowed-sinc FIR low-pass (scipy.signal.firwin taps), applied as a convolution so it stays differentiable.

    Differentiable: yes · Random: no

    Arguments:
        cutoff (float): Hz, below the Nyquist frequency. Default: 4000.
        taps (int): odd filter length. Default: 255.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> LowPass(4000)(x, 16_000)
    """

    name = "lowpass"
    differentiable = True

    def __init__(self, cutoff: float = 4000, taps: int = 255):
        self.cutoff = positive("lowpass cutoff", cutoff, hi=192_000)
        self.taps = positive("lowpass taps", taps, int, hi=4095) | 1  # odd: a whole-sample delay, removed by centring

    def check(self, sample_rate):
        if self.cutoff >= sample_rate / 2:
            raise ValueError(f"{self.spec}: the cutoff must be below the Nyquist frequency {sample_rate / 2:g} Hz")

    def apply(self, x, sample_rate):
        kernel = torch.from_numpy(scipy.signal.firwin(self.taps, self.cutoff, fs=sample_rate).astype(np.float32)).to(x)
        half = self.taps // 2  # the kernel is symmetric: its centre sample is the output's zero delay
        return torchaudio.functional.fftconvolve(x, kernel.view(1, -1))[..., half : half + x.shape[-1]]


class Median(Defense):
    r"""Sliding median over `size` samples (reflect-padded): removes isolated spikes, as a sparse perturbation is made of.

    Differentiable: yes (the gradient flows to each window's median sample) · Random: no

    Arguments:
        size (int): odd window length in samples. Default: 3.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> Median(3)(x, 16_000)
    """

    name = "median"
    differentiable = True  # the gradient flows to the median sample of each window

    def __init__(self, size: int = 3):
        self.size = _odd("median size", size)

    def apply(self, x, sample_rate):
        half = self.size // 2
        padded = F.pad(x.unsqueeze(1), (half, half), mode="replicate").squeeze(1)  # replicate: any length works
        return padded.unfold(-1, self.size, 1).median(dim=-1).values


class Wiener(NumpyDefense):
    r"""Local mean/variance Wiener filter over `size` samples (scipy.signal.wiener).

    Differentiable: no (adaptive attacks pass the identity gradient back through it: BPDA) · Random: no

    Arguments:
        size (int): odd window length in samples. Default: 5.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> Wiener(5)(x, 16_000)
    """

    name = "wiener"

    def __init__(self, size: int = 5):
        self.size = _odd("wiener size", size)

    def apply_clip(self, clip, sample_rate):
        with np.errstate(divide="ignore", invalid="ignore"):  # silent stretches have zero local variance
            y = scipy.signal.wiener(clip.astype(np.float64), self.size)
        return np.nan_to_num(y, nan=0.0)
