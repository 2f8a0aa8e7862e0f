"""Defense specs: `name[:arg...][:key=value...]` (`mp3:32`, `resample:8000`, `noise:20:seed=3`) and chains
joined by `+` (`resample:8000+mp3:64`, applied left to right). `none` is the identity."""

from __future__ import annotations

from defenses.base import Defense
from defenses.denoise import SpectralGate, TorchSpectralGate
from defenses.filters import LowPass, Median, Wiener
from defenses.griffin_lim import MelInversion
from defenses.mp3 import MP3
from defenses.noise import GaussianNoise
from defenses.ogg import Opus, Vorbis
from defenses.quantize import Quantize
from defenses.resample import Resample
from defenses.shift import TimeShift
from defenses.voice_codecs import AAC, AMRNB, G711, G722, G726, Mobile, Telephone
from staa import specs


class Identity(Defense):
    r"""No defense: the undefended model (`none` in a spec).

    Differentiable: yes · Random: no

    Arguments: none

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> Identity()(x, 16_000)
    """

    name = "none"
    differentiable = True

    def apply(self, x, sample_rate):
        return x


class Chain(Defense):
    r"""Defenses applied left to right (`a+b` in a spec); differentiable where all are, random where any is.

    Differentiable: where every part is (each part keeps its own gradient, BPDA where it has none) · Random: where any part is

    Arguments:
        defenses (list[Defense]): at least one.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> Chain([Resample(8000), MP3(64)])(x, 16_000)
    """

    def __init__(self, defenses: list[Defense]):
        if not defenses:
            raise ValueError("a defense chain needs at least one defense")
        self.defenses = list(defenses)
        self.differentiable = all(d.differentiable for d in self.defenses)
        self.random = any(d.random for d in self.defenses)

    @property
    def spec(self):
        return "+".join(d.spec for d in self.defenses)

    def reseed(self) -> Defense:
        for d in self.defenses:
            d.reseed()
        return self

    def check(self, sample_rate):
        for d in self.defenses:
            d.check(sample_rate)

    def apply(self, x, sample_rate):
        for d in self.defenses:
            x = d(x, sample_rate)
        return x

    def bpda(self, x, sample_rate):
        """Each part's own: the differentiable parts keep their real gradient inside a chain."""
        for d in self.defenses:
            x = d.bpda(x, sample_rate)
        return x


DEFENSES: dict[str, type[Defense]] = {
    cls.name: cls
    for cls in (
        Identity,
        MP3,
        Opus,
        Vorbis,
        AMRNB,
        G711,
        G722,
        G726,
        AAC,
        Telephone,
        Mobile,
        Resample,
        LowPass,
        Median,
        Wiener,
        Quantize,
        SpectralGate,
        TorchSpectralGate,
        MelInversion,
        GaussianNoise,
        TimeShift,
    )
}


def _one(spec: str) -> Defense:
    name, positional, keyword = specs.split(spec, "defense")
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r} in {spec!r}; choose from {', '.join(DEFENSES)}")
    kwargs = specs.bind(spec, "defense", DEFENSES[name], positional, keyword)
    try:
        return DEFENSES[name](**kwargs)
    except ValueError as err:
        raise ValueError(f"defense {spec!r}: {err}") from None


def parse_defense(spec: str) -> Defense:
    """A defense (or a chain) from its spec; a clear ValueError names the part that is wrong."""
    specs.split(spec, "defense")  # empty or overlong
    parts = [_one(p) for p in spec.split("+")]
    return parts[0] if len(parts) == 1 else Chain(parts)
