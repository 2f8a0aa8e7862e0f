"""Strict checks of the values a user types (flags, TOML, JSON options, specs): an integer where an integer belongs
(not 1.5, not true), a real flag for a bool (not "no"), finite numbers, and each parameter within its range."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path


def describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_type(name: str, value, hint) -> None:
    """Raise ValueError unless `value` is of the annotated type `hint` (int, float, bool, str, list[...], dict,
    tuple, unions with None); floats must be finite, and no bool passes for a number."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return check_type(name, value, arg)
            except ValueError as err:
                errors.append(err)
        raise errors[0]
    kind = origin or hint
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        str: lambda v: isinstance(v, str),
        list: lambda v: isinstance(v, (list, tuple)),
        tuple: lambda v: isinstance(v, (list, tuple)),
        dict: lambda v: isinstance(v, dict),
    }.get(kind)
    if ok is None:
        return  # a type these checks do not cover (e.g. a nested dataclass): its own code checks it
    if not ok(value):
        want = {float: "a finite number", int: "an integer", bool: "true or false", str: "a string"}.get(
            kind, f"a {kind.__name__}"
        )
        raise ValueError(f"{name} must be {want}, got {describe(value)}")
    if kind in (list, tuple) and args and args[-1] is not Ellipsis and len(args) == 1:
        for i, item in enumerate(value):
            check_type(f"{name}[{i}]", item, args[0])


def check_fields(obj, where: str = "") -> None:
    """`check_type` for every field of the dataclass `obj` against its annotation."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.name in hints:
            check_type(f"{where}{f.name}", getattr(obj, f.name), hints[f.name])


def in_range(name: str, value, lo=None, hi=None):
    """`value` if lo <= value <= hi (either bound may be None), else a ValueError naming the range."""
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = (
            f"within {lo:g}-{hi:g}"
            if lo is not None and hi is not None
            else f">= {lo:g}"
            if lo is not None
            else f"<= {hi:g}"
        )
        raise ValueError(f"{name} must be {bounds}, got {describe(value)}")
    return value


def read_json_object(path, error: type[Exception] = ValueError, *, missing: str = "not found") -> dict:
    """The JSON object in file `path`, or `error("PATH: problem")`: missing, unreadable, not JSON, not an object."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {missing}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path}: is not valid JSON ({err})") from None
    except OSError as err:
        raise error(f"{path}: cannot be read ({err.strerror})") from None
    if not isinstance(value, dict):
        raise error(f"{path}: is not a JSON object")
    return value
