"""Telephony and streaming codecs through PyAV (its own FFmpeg build): AMR-NB, G.711, G.722, G.726 and AAC, and the
channels users meet, `telephone` (G.711 mu-law) and `mobile` (AMR-NB 12.2). The PyAV wheel has no AMR-WB, GSM or Speex
encoder, so those are not offered."""

from __future__ import annotations

import functools
import io
from math import gcd

import numpy as np
from scipy.signal import resample_poly

from defenses.base import NumpyDefense, fit_length

MAX_DELAY = 4096  # samples searched for a codec's delay: AAC's priming is 1,024


def _resample(clip: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst:
        return clip
    g = gcd(src, dst)
    return resample_poly(clip, dst // g, src // g).astype(np.float32)


def _encode_decode(
    pcm: np.ndarray, rate: int, encoder: str, decoder: str, bit_rate: int | None, fmt: str
) -> np.ndarray:
    """One round trip on bare codec contexts (no container), new ones per clip: no state carries over."""
    import av

    enc = av.CodecContext.create(encoder, "w")
    enc.sample_rate, enc.layout, enc.format = rate, "mono", fmt
    if bit_rate:
        enc.bit_rate = bit_rate
    enc.open()
    dec = av.CodecContext.create(decoder, "r")
    dec.sample_rate, dec.layout = rate, "mono"
    n = enc.frame_size or 1024  # PCM codecs take any frame size
    samples = np.clip(np.round(pcm * 32767), -32768, 32767).astype(np.int16) if fmt == "s16" else pcm
    out = []

    def decode(packets):
        for packet in packets:
            out.extend(f.to_ndarray().reshape(-1) for f in dec.decode(packet))

    for start in range(0, len(samples), n):
        chunk = samples[start : start + n]
        if enc.frame_size and len(chunk) < n:
            chunk = np.pad(chunk, (0, n - len(chunk)))  # a codec of fixed frames takes only whole ones
        frame = av.AudioFrame.from_ndarray(chunk[None], format=fmt, layout="mono")
        frame.sample_rate, frame.pts = rate, start
        decode(enc.encode(frame))
    decode(enc.encode(None))
    out.extend(f.to_ndarray().reshape(-1) for f in dec.decode(None))
    y = np.concatenate(out) if out else np.zeros(0, np.float32)
    return (y / 32768.0 if y.dtype == np.int16 else y).astype(np.float32)


def _wav_roundtrip(pcm: np.ndarray, rate: int, encoder: str, bit_rate: int) -> np.ndarray:
    """Through a WAV container in memory: G.726's decoder needs the bits per sample its header carries."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="wav") as box:
        stream = box.add_stream(encoder, rate=rate, layout="mono")
        stream.codec_context.bit_rate, stream.codec_context.format = bit_rate, "s16"
        frame = av.AudioFrame.from_ndarray(
            np.clip(np.round(pcm * 32767), -32768, 32767).astype(np.int16)[None], format="s16", layout="mono"
        )
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            box.mux(packet)
    buf.seek(0)
    with av.open(buf, "r") as box:
        y = np.concatenate([f.to_ndarray().reshape(-1) for f in box.decode(audio=0)])
    return (y / 32768.0).astype(np.float32)


def _roundtrip(pcm: np.ndarray, rate: int, how: tuple) -> np.ndarray:
    encoder, decoder, bit_rate, fmt, container = how
    if container:
        return _wav_roundtrip(pcm, rate, encoder, bit_rate)
    return _encode_decode(pcm, rate, encoder, decoder, bit_rate, fmt)


@functools.lru_cache(maxsize=None)
def _delay(rate: int, how: tuple) -> int:
    """The codec's delay in samples, found once on a seeded speech-band probe (smoothed noise, 1 s)."""
    probe = np.convolve(np.random.default_rng(0).standard_normal(rate), np.ones(4) / 4, "same").astype(np.float32)
    y = _roundtrip(0.1 * probe, rate, how)
    window = probe[: rate // 2]
    scores = [float(np.dot(y[lag : lag + len(window)], window)) for lag in range(min(MAX_DELAY, len(y) - len(window)))]
    return int(np.argmax(scores))


class Codec(NumpyDefense):
    """An encode-decode round trip at the codec's own rate (resampled there and back), aligned to the input: the
    codec's delay (look-ahead, AAC's priming) is measured once per setting and cut."""

    encoder = decoder = ""
    rate: int | None = None  # the codec's sample rate; None: the clip's own
    fmt = "s16"
    container: str | None = None

    def bit_rate(self) -> int | None:
        return None

    def apply_clip(self, clip, sample_rate):
        rate = self.rate or sample_rate
        how = (self.encoder, self.decoder, self.bit_rate(), self.fmt, self.container)
        pcm = _resample(clip, sample_rate, rate)
        decoded = fit_length(_roundtrip(pcm, rate, how)[_delay(rate, how) :], len(pcm))
        return fit_length(_resample(decoded, rate, sample_rate), len(clip))


AMR_NB_KBPS = (4.75, 5.15, 5.9, 6.7, 7.4, 7.95, 10.2, 12.2)


class AMRNB(Codec):
    r"""AMR-NB round trip at `kbps` (opencore-amr through PyAV) at 8 kHz: the GSM/3G mobile voice codec.

    Differentiable: no (adaptive attacks pass the identity gradient back through it: BPDA) · Random: no

    Arguments:
        kbps (float): one of the codec's modes, 4.75-12.2. Default: 12.2.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> AMRNB(12.2)(x, 16_000)
    """

    name = "amr_nb"
    encoder, decoder, rate = "libopencore_amrnb", "amrnb", 8000

    def __init__(self, kbps: float = 12.2):
        if kbps not in AMR_NB_KBPS:
            raise ValueError(f"amr_nb bitrate must be one of {', '.join(map(str, AMR_NB_KBPS))} kbps, got {kbps}")
        self.kbps = kbps

    def bit_rate(self):
        return round(self.kbps * 1000)


class G711(Codec):
    r"""G.711 round trip at 8 kHz (mu-law or A-law companding, 64 kbps): the landline telephone channel.

    Differentiable: no (adaptive attacks pass the identity gradient back through it: BPDA) · Random: no

    Arguments:
        law (str): "mulaw" (North America, Japan) or "alaw" (elsewhere). Default: "mulaw".

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> G711("alaw")(x, 16_000)
    """

    name = "g711"
    rate = 8000

    def __init__(self, law: str = "mulaw"):
        if law not in ("mulaw", "alaw"):
            raise ValueError(f"g711 law must be mulaw or alaw, got {law!r}")
        self.law = law
        self.encoder = self.decoder = f"pcm_{law}"


class G722(Codec):
    r"""G.722 round trip at 16 kHz, 64 kbps (sub-band ADPCM): wideband telephony (VoIP, DECT).

    Differentiable: no (adaptive attacks pass the identity gradient back through it: BPDA) · Random: no

    Arguments: none

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> G722()(x, 16_000)
    """

    name = "g722"
    encoder = decoder = "g722"
    rate = 16000


G726_KBPS = (16, 24, 32, 40)


class G726(Codec):
    r"""G.726 round trip at 8 kHz and `kbps` (ADPCM): telephone trunks and DECT.

    Differentiable: no (adaptive attacks pass the identity gradient back through it: BPDA) · Random: no

    Arguments:
        kbps (int): 16, 24, 32 or 40. Default: 32.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> G726(32)(x, 16_000)
    """

    name = "g726"
    encoder, rate, container = "g726", 8000, "wav"

    def __init__(self, kbps: int = 32):
        if kbps not in G726_KBPS:
            raise ValueError(f"g726 bitrate must be one of {', '.join(map(str, G726_KBPS))} kbps, got {kbps}")
        self.kbps = int(kbps)

    def bit_rate(self):
        return self.kbps * 1000


class AAC(Codec):
    r"""AAC-LC round trip at `kbps` (FFmpeg's encoder through PyAV) at the clip's own rate: streaming and video audio.

    Differentiable: no (adaptive attacks pass the identity gradient back through it: BPDA) · Random: no

    Arguments:
        kbps (int): target bitrate, 8-320. Default: 32.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> AAC(32)(x, 16_000)
    """

    name = "aac"
    encoder = decoder = "aac"
    fmt = "fltp"

    def __init__(self, kbps: int = 32):
        if isinstance(kbps, bool) or not isinstance(kbps, int) or not 8 <= kbps <= 320:
            raise ValueError(f"aac bitrate must be an integer within 8-320 kbps, got {kbps!r}")
        self.kbps = kbps

    def bit_rate(self):
        return self.kbps * 1000

    def check(self, sample_rate):
        if sample_rate not in AAC_RATES:
            raise ValueError(f"aac needs one of {AAC_RATES} Hz, got {sample_rate}; chain resample first")


AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


class Telephone(G711):
    r"""The landline channel: down to 8 kHz, G.711 mu-law, back up (`g711:mulaw` under the name users look for).

    Differentiable: no (adaptive attacks pass the identity gradient back through it: BPDA) · Random: no

    Arguments: none

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> Telephone()(x, 16_000)
    """

    name = "telephone"

    def __init__(self):
        super().__init__("mulaw")


class Mobile(AMRNB):
    r"""The mobile voice channel: down to 8 kHz, AMR-NB at 12.2 kbps, back up (`amr_nb:12.2`).

    Differentiable: no (adaptive attacks pass the identity gradient back through it: BPDA) · Random: no

    Arguments: none

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> Mobile()(x, 16_000)
    """

    name = "mobile"

    def __init__(self):
        super().__init__(12.2)
