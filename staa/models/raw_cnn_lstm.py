"""Raw-waveform CNN + LSTM victims after Emo18 (Tzirakis et al., 2018) and Zhao19 (Zhao et al., 2019)."""

from __future__ import annotations

import torch
from torch import nn

from staa.models.features import standardise_waveform
from staa.models.rnn import run_rnn


class _CnnLstm(nn.Module):
    def __init__(self, blocks: nn.Sequential, channels: int, n_classes: int, hidden: int):
        super().__init__()
        self.blocks = blocks
        self.lstm = nn.LSTM(channels, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(standardise_waveform(x).unsqueeze(1)).transpose(1, 2)  # [B, frames, C]
        out, _ = run_rnn(self.lstm, h)
        return self.head(out.mean(dim=1))


class Emo18(_CnnLstm):
    """Wide-kernel strided convolutions on the raw waveform (a learned filterbank), then a BiLSTM."""

    def __init__(self, n_classes: int, sample_rate: int = 16_000, channels: int = 64, hidden: int = 64):
        self.config = {"channels": channels, "hidden": hidden}
        blocks = nn.Sequential(
            nn.Conv1d(1, channels // 2, kernel_size=80, stride=4, padding=38),
            nn.BatchNorm1d(channels // 2),
            nn.ReLU(),
            nn.MaxPool1d(4),
            nn.Conv1d(channels // 2, channels, kernel_size=7, padding=3),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.MaxPool1d(4),
            nn.Conv1d(channels, channels, kernel_size=7, padding=3),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.MaxPool1d(4),
        )
        super().__init__(blocks, channels, n_classes, hidden)


class Zhao19(_CnnLstm):
    """Four local feature learning blocks (small-kernel conv, BN, ELU, max-pool) on the raw waveform, then an LSTM."""

    def __init__(self, n_classes: int, sample_rate: int = 16_000, channels: int = 48, hidden: int = 64):
        self.config = {"channels": channels, "hidden": hidden}
        widths = [1, channels // 2, channels // 2, channels, channels]
        layers = []
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            stride = 4 if i == 0 else 1
            layers += [
                nn.Conv1d(c_in, c_out, kernel_size=9 if i == 0 else 3, stride=stride, padding=4 if i == 0 else 1),
                nn.BatchNorm1d(c_out),
                nn.ELU(),
                nn.MaxPool1d(4),
            ]
        super().__init__(nn.Sequential(*layers), channels, n_classes, hidden)
