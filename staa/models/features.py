"""Differentiable feature front ends that live inside the victims, so attacks run end to end on waveforms."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn


class LogMel(nn.Module):
    """Log-mel spectrogram `[B, T] -> [B, n_mels, frames]`, normalised per utterance and mel bin.

    The per-utterance normalisation removes channel and level differences between recordings,
    which matters more for speaker-independent SER than anything the network can learn from them.
    """

    def __init__(self, sample_rate: int = 16_000, n_mels: int = 64, win_ms: float = 25.0, hop_ms: float = 10.0):
        super().__init__()
        win = int(sample_rate * win_ms / 1000)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=1 << (win - 1).bit_length(),
            win_length=win,
            hop_length=int(sample_rate * hop_ms / 1000),
            n_mels=n_mels,
            f_min=50.0,
            f_max=sample_rate / 2,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.log(self.mel(x) + 1e-6)
        return (spec - spec.mean(dim=-1, keepdim=True)) / (_safe_sqrt(spec.var(dim=-1, keepdim=True)) + 1e-5)


def _safe_sqrt(t: torch.Tensor) -> torch.Tensor:
    """sqrt with a finite gradient at 0: digital silence (a silent crop, a zero-padded tail) has zero variance,
    where sqrt's backward is inf * 0 = NaN, and one such clip in a batch turns a whole attack or training step into NaN."""
    return t.clamp_min(1e-12).sqrt()


def zero_mean_unit_var(x: torch.Tensor) -> torch.Tensor:
    """Per clip `(x - mean) / sqrt(var + 1e-7)`: Wav2Vec2FeatureExtractor's `do_normalize`, in torch."""
    x = x - x.mean(dim=-1, keepdim=True)
    return x / torch.sqrt(x.var(dim=-1, keepdim=True, unbiased=False) + 1e-7)


def standardise_waveform(x: torch.Tensor) -> torch.Tensor:
    """Zero-mean, unit-RMS per clip: raw-waveform models then see no level differences."""
    x = x - x.mean(dim=-1, keepdim=True)
    return x / (_safe_sqrt(x.pow(2).mean(dim=-1, keepdim=True)) + 1e-4)
