"""A small transformer encoder over log-mel frames (an attention model, unlike the conv/recurrent victims)."""

from __future__ import annotations

import math

import torch
from torch import nn

from staa.models.features import LogMel


class MelTransformer(nn.Module):
    def __init__(
        self,
        n_classes: int,
        sample_rate: int = 16_000,
        n_mels: int = 64,
        d_model: int = 96,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.config = {"n_mels": n_mels, "d_model": d_model, "layers": layers, "heads": heads, "dropout": dropout}
        self.features = LogMel(sample_rate, n_mels)
        # A strided conv halves the frame rate: attention cost is quadratic in the number of frames.
        self.embed = nn.Sequential(nn.Conv1d(n_mels, d_model, kernel_size=3, stride=2, padding=1), nn.GELU())
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=2 * d_model, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_classes)
        self.d_model = d_model

    def _positions(self, n: int, device) -> torch.Tensor:
        pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, self.d_model, 2, device=device) * (-math.log(10_000.0) / self.d_model))
        pe = torch.zeros(n, self.d_model, device=device)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
        return pe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(self.features(x)).transpose(1, 2)  # [B, frames, d]
        h = self.encoder(h + self._positions(h.shape[1], h.device))
        return self.head(self.norm(h).mean(dim=1))
