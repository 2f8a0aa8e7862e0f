"""Log-mel spectrogram victims: a 2-D CNN and a CRNN (CNN + GRU over time)."""

from __future__ import annotations

import torch
from torch import nn

from staa.models.features import LogMel
from staa.models.rnn import run_rnn


def _conv_block(c_in: int, c_out: int, pool) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(pool))


class MelCNN(nn.Module):
    """Four 3x3 conv blocks on the log-mel image, global average pooling, a linear head."""

    def __init__(self, n_classes: int, sample_rate: int = 16_000, n_mels: int = 64, width: int = 16):
        super().__init__()
        self.config = {"n_mels": n_mels, "width": width}
        self.features = LogMel(sample_rate, n_mels)
        w = width
        self.body = nn.Sequential(
            _conv_block(1, w, 2), _conv_block(w, 2 * w, 2), _conv_block(2 * w, 4 * w, 2), _conv_block(4 * w, 4 * w, 2)
        )
        self.head = nn.Linear(4 * w, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.features(x).unsqueeze(1))
        return self.head(h.mean(dim=(2, 3)))


class CRNN(nn.Module):
    """Conv blocks that pool frequency more than time, then a bidirectional GRU over the frames."""

    def __init__(self, n_classes: int, sample_rate: int = 16_000, n_mels: int = 64, width: int = 16, hidden: int = 64):
        super().__init__()
        self.config = {"n_mels": n_mels, "width": width, "hidden": hidden}
        self.features = LogMel(sample_rate, n_mels)
        w = width
        self.body = nn.Sequential(
            _conv_block(1, w, (2, 2)), _conv_block(w, 2 * w, (4, 2)), _conv_block(2 * w, 2 * w, (4, 1))
        )
        self.gru = nn.GRU(2 * w * (n_mels // 32), hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.features(x).unsqueeze(1))  # [B, C, F', T']
        h = h.flatten(1, 2).transpose(1, 2)  # [B, T', C*F']
        out, _ = run_rnn(self.gru, h)
        return self.head(out.mean(dim=1))
