"""Ogg Opus and Ogg Vorbis round trips through libsndfile (soundfile), in memory."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from defenses.base import NumpyDefense, fit_length

# libsndfile maps its compression level linearly onto Opus bitrates from 256 kbps (0.0) to 6 kbps (1.0)
OPUS_MAX_KBPS, OPUS_MIN_KBPS = 256.0, 6.0
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def _roundtrip(clip: np.ndarray, sample_rate: int, subtype: str, level: float) -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, clip, sample_rate, format="OGG", subtype=subtype, compression_level=level)
    buf.seek(0)
    decoded, _ = sf.read(buf, dtype="float32")
    return fit_length(decoded, len(clip))


class Opus(NumpyDefense):
    r"""Ogg Opus round trip at `kbps` (libsndfile through soundfile, in memory): a telephony-grade codec.

    Differentiable: no (adaptive attacks pass the identity gradient back through it: BPDA) · Random: no

    Arguments:
        kbps (float): target bitrate (6-256; the clips at 8, 12, 16, 24 or 48 kHz). Default: 16.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> Opus(16)(x, 16_000)
    """

    name = "opus"

    def __init__(self, kbps: float = 16):
        if isinstance(kbps, bool) or not isinstance(kbps, (int, float)) or not OPUS_MIN_KBPS <= kbps <= OPUS_MAX_KBPS:
            raise ValueError(f"opus bitrate must be within {OPUS_MIN_KBPS:g}-{OPUS_MAX_KBPS:g} kbps, got {kbps}")
        self.kbps = kbps

    def check(self, sample_rate):
        if sample_rate not in OPUS_RATES:
            raise ValueError(f"opus needs one of {OPUS_RATES} Hz, got {sample_rate}; chain resample first")

    def apply_clip(self, clip, sample_rate):
        level = (OPUS_MAX_KBPS - self.kbps) / (OPUS_MAX_KBPS - OPUS_MIN_KBPS)
        return _roundtrip(clip, sample_rate, "OPUS", level)


class Vorbis(NumpyDefense):
    r"""Ogg Vorbis round trip at quality `level` (libsndfile through soundfile, in memory).

    Differentiable: no (adaptive attacks pass the identity gradient back through it: BPDA) · Random: no

    Arguments:
        level (float): libsndfile's compression level, 0 (best quality) to 1 (smallest). Default: 0.9.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> Vorbis(0.9)(x, 16_000)
    """

    name = "vorbis"

    def __init__(self, level: float = 0.9):
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 <= level <= 1.0:
            raise ValueError(f"vorbis compression level must be within 0 (best quality) and 1 (smallest), got {level}")
        self.level = level

    def apply_clip(self, clip, sample_rate):
        return _roundtrip(clip, sample_rate, "VORBIS", self.level)
