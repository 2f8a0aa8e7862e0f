"""The victim zoo: SER models mapping waveforms `[B, T]` to logits `[B, C]`, features inside."""

from __future__ import annotations

import inspect
import typing

from torch import nn

from staa.io.validate import check_type, in_range
from staa.models.mel_cnn import CRNN, MelCNN
from staa.models.mel_transformer import MelTransformer
from staa.models.raw_cnn_lstm import Emo18, Zhao19
from staa.models.wav2vec2 import Wav2Vec2

MODELS: dict[str, type[nn.Module]] = {
    "emo18": Emo18,
    "zhao19": Zhao19,
    "mel_cnn": MelCNN,
    "crnn": CRNN,
    "mel_transformer": MelTransformer,
    "wav2vec2": Wav2Vec2,
}


# the range of every architecture option: integer sizes (widths, channels, layers, heads, mel bands) and dropout
INT_RANGE, FLOAT_RANGE = (1, 4096), (0.0, 0.95)


def build_model(arch: str, n_classes: int, sample_rate: int = 16_000, **config) -> nn.Module:
    """A zoo model; each option in `config` must be one of the architecture's constructor arguments, an integer
    size within 1-4096 or a dropout within 0-0.95."""
    if arch not in MODELS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(MODELS)}")
    cls = MODELS[arch]
    hints = typing.get_type_hints(cls.__init__)
    options = [p for p in list(inspect.signature(cls).parameters)[2:]]
    for key, value in config.items():
        if key not in options:
            raise ValueError(f"bad config for {arch}: unknown option {key!r} (allowed: {', '.join(options)})")
        try:
            check_type(key, value, hints.get(key, float))
            in_range(key, value, *(INT_RANGE if hints.get(key) is int else FLOAT_RANGE))
        except ValueError as err:
            raise ValueError(f"bad config for {arch}: {err}") from None
    try:
        return MODELS[arch](n_classes, sample_rate, **config)
    except TypeError as err:
        raise ValueError(f"bad config for {arch}: {err}") from None


__all__ = ["MODELS", "build_model"]
