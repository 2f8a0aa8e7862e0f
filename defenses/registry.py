"""Defense specs: `name[:arg...][:key=value...]` (`mp3:32`, `resample:8000`, `noise:20:seed=3`) and chains
joined by `+` (`resample:8000+mp3:64`, applied left to right). `none` is the identity."""
from __future__ import annotations

import inspect
import math
import re
import typing

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

    def check(self, sample_rate):
        for d in self.defenses:
            d.check(sample_rate)

    def apply(self, x, sample_rate):
        for d in self.defenses:
            x = d(x, sample_rate)
        return x


DEFENSES: dict[str, type[Defense]] = {cls.name: cls for cls in (
    Identity, MP3, Opus, Vorbis, Resample, LowPass, Median, Wiener, Quantize,
    SpectralGate, TorchSpectralGate, MelInversion, GaussianNoise, TimeShift)}


_INTEGER = re.compile(r"[+-]?\d{1,19}")


def _value(spec: str, key: str, text: str, hint):
    """The parameter `key` of `spec` as its constructor annotates it: an integer literal for `int`, a finite number
    for `float`."""
    if hint is int:
        if not _INTEGER.fullmatch(text.strip()):
            raise ValueError(f"defense {spec!r}: {key} must be an integer, got {text!r}")
        return int(text)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"defense {spec!r}: {key} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"defense {spec!r}: {key} must be a finite number, got {text!r}")
    return value


def _one(spec: str) -> Defense:
    name, *parts = spec.strip().split(":")
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r} in {spec!r}; choose from {', '.join(DEFENSES)}")
    cls = DEFENSES[name]
    params = [p for p in inspect.signature(cls).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    hints = typing.get_type_hints(cls.__init__)
    positional = [p for p in parts if "=" not in p]
    if len(positional) > len(params):
        raise ValueError(f"defense {spec!r}: takes at most {len(params)} parameter(s) ({', '.join(p.name for p in params) or 'none'})")
    given = dict(zip((p.name for p in params), positional))
    for part in (p for p in parts if "=" in p):
        key, value = part.split("=", 1)
        if key not in {p.name for p in params}:
            raise ValueError(f"defense {spec!r}: unknown parameter {key!r} (allowed: {', '.join(p.name for p in params) or 'none'})")
        if key in given:
            raise ValueError(f"defense {spec!r}: {key} is given twice")
        given[key] = value
    kwargs = {k: _value(spec, k, v, hints.get(k)) for k, v in given.items()}
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ValueError(f"defense {spec!r}: {err}") from None


MAX_SPEC = 1000


def parse_defense(spec: str) -> Defense:
    """A defense (or a chain) from its spec; a clear ValueError names the part that is wrong."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty defense spec {spec!r}")
    if len(spec) > MAX_SPEC:
        raise ValueError(f"defense spec {spec[:40]!r}... is {len(spec)} characters long (at most {MAX_SPEC})")
    parts = [_one(p) for p in spec.split("+")]
    return parts[0] if len(parts) == 1 else Chain(parts)
