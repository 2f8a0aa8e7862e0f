"""Defense specs: `name[:arg...][:key=value...]` (`mp3:32`, `resample:8000`, `noise:20:seed=3`) and chains
joined by `+` (`resample:8000+mp3:64`, applied left to right). `none` is the identity."""
from __future__ import annotations

import inspect

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


class Identity(Defense):
    name = "none"
    differentiable = True

    def apply(self, x, sample_rate):
        return x


class Chain(Defense):
    def __init__(self, defenses: list[Defense]):
        if not defenses:
            raise ValueError("a defense chain needs at least one defense")
        self.defenses = list(defenses)
        self.differentiable = all(d.differentiable for d in self.defenses)
        self.random = any(d.random for d in self.defenses)

    @property
    def spec(self):
        return "+".join(d.spec for d in self.defenses)

    def apply(self, x, sample_rate):
        for d in self.defenses:
            x = d(x, sample_rate)
        return x


DEFENSES: dict[str, type[Defense]] = {cls.name: cls for cls in (
    Identity, MP3, Opus, Vorbis, Resample, LowPass, Median, Wiener, Quantize,
    SpectralGate, TorchSpectralGate, MelInversion, GaussianNoise, TimeShift)}


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"defense parameter {text!r} is not a number") from None


def _one(spec: str) -> Defense:
    name, *parts = spec.strip().split(":")
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r} in {spec!r}; choose from {', '.join(DEFENSES)}")
    cls = DEFENSES[name]
    args = [_number(p) for p in parts if "=" not in p]
    kwargs = {k: _number(v) for k, v in (p.split("=", 1) for p in parts if "=" in p)}
    try:
        inspect.signature(cls).bind(*args, **kwargs)
    except TypeError as err:
        raise ValueError(f"bad parameters for defense {spec!r}: {err}") from None
    return cls(*args, **kwargs)


def parse_defense(spec: str) -> Defense:
    """A defense (or a chain) from its spec; a clear ValueError names the part that is wrong."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty defense spec {spec!r}")
    parts = [_one(p) for p in spec.split("+")]
    return parts[0] if len(parts) == 1 else Chain(parts)
