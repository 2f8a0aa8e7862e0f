"""The one spec grammar of attacks and defenses: `name[:arg...][:key=value...]`, e.g. `mp3:32`, `noise:20:seed=3`,
`pgd:steps=10`; defenses chain with `+`. Parameters bind to the constructor's signature (positional ones in order) and
are typed by its annotations; errors name the spec and the allowed keys. Pairs `NAME=SPEC` name the entries of a grid.
Standard library only: every layer may use it."""

from __future__ import annotations

import inspect
import math
import re
import types
import typing

MAX_SPEC = 1000
_INTEGER = re.compile(r"[+-]?\d{1,19}")
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def split(spec: str, what: str) -> tuple[str, list[str], dict[str, str]]:
    """`name`, its positional arguments and its `key=value` ones, as text."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{what} {spec!r}: the spec is empty")
    if len(spec) > MAX_SPEC:
        raise ValueError(f"{what} {spec[:40]!r}...: the spec is {len(spec)} characters long (at most {MAX_SPEC})")
    name, *parts = spec.strip().split(":")
    positional, keyword = [], {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            positional.append(part)
        elif key in keyword:
            raise ValueError(f"{what} {spec!r}: {key} is given twice")
        else:
            keyword[key] = value
    return name, positional, keyword


def parameters(fn, skip=()) -> list[inspect.Parameter]:
    """The parameters a spec may set: named ones of `fn` (a class: its constructor), without `skip` and `self`."""
    return [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in skip
    ]


def bind(spec: str, what: str, fn, positional: list, keyword: dict, skip=()) -> dict:
    """Keyword arguments of `fn` from a spec's parameters (text from a spec string, or values from a TOML table)."""
    params = parameters(fn, skip)
    names = [p.name for p in params]
    allowed = ", ".join(names) or "none"
    if len(positional) > len(params):
        raise ValueError(f"{what} {spec!r}: takes at most {len(params)} parameter(s) ({allowed})")
    given = dict(zip(names, positional))
    for key, value in keyword.items():
        if key not in names:
            raise ValueError(f"{what} {spec!r}: unknown parameter {key!r} (allowed: {allowed})")
        if key in given:
            raise ValueError(f"{what} {spec!r}: {key} is given twice")
        given[key] = value
    missing = [p.name for p in params if p.default is p.empty and p.name not in given]
    if missing:
        raise ValueError(f"{what} {spec!r}: needs {', '.join(f'{m}=...' for m in missing)} (allowed: {allowed})")
    hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    return {k: convert(spec, what, k, v, hints.get(k)) for k, v in given.items()}


def convert(spec: str, what: str, key: str, value, hint):
    """`value` as the annotation `hint` asks: int, float (finite), bool, str; `X | None` takes X."""
    kinds = (
        [a for a in typing.get_args(hint) if a is not type(None)]
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        else [hint]
    )
    kind = kinds[0] if len(kinds) == 1 else None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
        raise ValueError(f"{what} {spec!r}: {key} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{what} {spec!r}: {key} must be an integer, got {value!r}")
    if kind is float:
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"{what} {spec!r}: {key} must be a finite number, got {value!r}")
        return number
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} {spec!r}: {key} must be a non-empty text, got {value!r}")
    return value


def text(value) -> str:
    """A value as a spec writes it: `32`, `0.1`, `4000` (not `4000.0`), exact where `:g` would round."""
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def pairs(items, what: str) -> dict[str, str]:
    """`["a=pgd:steps=10", ...]` -> {"a": "pgd:steps=10"}: the NAME=SPEC form of grid flags."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"{what} {item!r} must look like NAME=VALUE")
        if name in out:
            raise ValueError(f"{what}: the name {name!r} is given twice")
        out[name] = value
    return out
