"""MP3 compression round trip (audiomentations' Mp3Compression on the fast-mp3-augment backend: LAME in process)."""

from __future__ import annotations

from audiomentations import Mp3Compression

from defenses.base import NumpyDefense, fit_length

# fast-mp3-augment's bitrates (kbps); LAME itself takes no others
BITRATES = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 192, 224, 256, 320)


class MP3(NumpyDefense):
    r"""MP3 round trip at `bitrate` kbps: audiomentations' Mp3Compression (LAME, in process).

    Paper: Das et al., "ADAGIO", 2018 (compression as an audio defense)

    Differentiable: no (adaptive attacks pass the identity gradient back through it: BPDA) · Random: no

    Arguments:
        bitrate (int): kbps, as LAME accepts them (8-320). Default: 32.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> MP3(32)(x, 16_000)
    """

    name = "mp3"

    def __init__(self, bitrate: int = 32):
        if bitrate not in BITRATES:
            raise ValueError(f"mp3 bitrate must be one of {', '.join(map(str, BITRATES))} kbps, got {bitrate}")
        self.bitrate = int(bitrate)
        # preserve_delay=False: the encoder delay is cut, so the output lines up with the input sample for sample
        self._transform = Mp3Compression(
            min_bitrate=self.bitrate, max_bitrate=self.bitrate, backend="fast-mp3-augment", p=1.0
        )

    def apply_clip(self, clip, sample_rate):
        # fast-mp3-augment refuses clips under 100 ms; pad with silence, then cut back
        padded = fit_length(clip, max(len(clip), sample_rate // 10 + 1))
        return fit_length(self._transform(padded, sample_rate), len(clip))
