"""Mel-spectrogram inversion: waveform -> mel power spectrogram -> Griffin-Lim (torchaudio). Phase and fine detail
below the mel resolution, where a perturbation may hide, are rebuilt rather than kept."""

from __future__ import annotations

import torch
import torchaudio.transforms as T

from defenses.base import Defense, fit_length_torch, positive


class MelInversion(Defense):
    r"""Mel power spectrogram, then back to a waveform by Griffin-Lim (torchaudio): phase and detail finer than a mel band are lost.

    Differentiable: no (adaptive attacks pass the identity gradient back through it: BPDA) · Random: no

    Arguments:
        n_mels (int): mel bands. Default: 80.
        iterations (int): Griffin-Lim iterations. Default: 32.
        n_fft (int): STFT size. Default: 512.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> MelInversion(80)(x, 16_000)
    """

    name = "griffin_lim"

    def __init__(self, n_mels: int = 80, iterations: int = 32, n_fft: int = 512):
        self.n_mels = positive("griffin_lim n_mels", n_mels, int, hi=512)
        self.iterations = positive("griffin_lim iterations", iterations, int, hi=1000)
        self.n_fft = positive("griffin_lim n_fft", n_fft, int, hi=8192)
        if self.n_fft < 16:
            raise ValueError(f"griffin_lim n_fft must be within 16-8192, got {self.n_fft}")
        self._chains: dict[tuple, torch.nn.Module] = {}

    def _chain(self, sample_rate, device):
        key = (sample_rate, str(device))
        if key not in self._chains:
            hop = self.n_fft // 4
            self._chains[key] = torch.nn.Sequential(
                T.MelSpectrogram(sample_rate, n_fft=self.n_fft, hop_length=hop, n_mels=self.n_mels, power=2.0),
                T.InverseMelScale(
                    self.n_fft // 2 + 1, n_mels=self.n_mels, sample_rate=sample_rate, driver="gelsd"
                ),  # gelsd: the filterbank is rank-deficient
                # rand_init=False: a fixed start makes the defense deterministic
                T.GriffinLim(n_fft=self.n_fft, hop_length=hop, n_iter=self.iterations, power=2.0, rand_init=False),
            ).to(device)
        return self._chains[key]

    @torch.no_grad()
    def apply(self, x, sample_rate):
        # the STFT's reflect padding needs more than half an FFT of signal: zero-pad short clips
        padded = fit_length_torch(x, max(x.shape[-1], self.n_fft))
        return fit_length_torch(self._chain(sample_rate, x.device)(padded), x.shape[-1])
