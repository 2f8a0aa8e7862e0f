"""The victim zoo: SER models mapping waveforms `[B, T]` to logits `[B, C]`, features inside."""
from __future__ import annotations

from torch import nn

from staa.models.mel_cnn import CRNN, MelCNN
from staa.models.mel_transformer import MelTransformer
from staa.models.raw_cnn_lstm import Emo18, Zhao19

MODELS: dict[str, type[nn.Module]] = {
    "emo18": Emo18,
    "zhao19": Zhao19,
    "mel_cnn": MelCNN,
    "crnn": CRNN,
    "mel_transformer": MelTransformer,
}


def build_model(arch: str, n_classes: int, sample_rate: int = 16_000, **config) -> nn.Module:
    if arch not in MODELS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(MODELS)}")
    try:
        return MODELS[arch](n_classes, sample_rate, **config)
    except TypeError as err:
        raise ValueError(f"bad config for {arch}: {err}") from None


__all__ = ["MODELS", "build_model"]
