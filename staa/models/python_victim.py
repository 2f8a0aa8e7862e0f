"""Victims built by the user's own code (`python:module:function` or `python:path/to/file.py:function`): the
function takes no arguments and returns `(nn.Module, classes, sample_rate)`. This runs that code, as a config
with `trust_remote_code` would: name only code you trust."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from torch import nn

from staa.io.checkpoint import CheckpointError


def split_target(target: str) -> tuple[str, str]:
    module, sep, function = target.rpartition(":")
    if not sep or not module or not function.isidentifier():
        raise CheckpointError(f"python:{target}: expected python:module:function or python:file.py:function")
    return module, function


def module_file(target: str) -> Path | None:
    """The source file the target's module comes from, if it can be found without running it."""
    module, _ = split_target(target)
    if module.endswith(".py"):
        return Path(module)
    try:
        spec = importlib.util.find_spec(module) if "." not in module else None
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec and spec.origin and os.path.isfile(spec.origin) else None


def load_python(target: str) -> tuple[nn.Module, list, int]:
    module_name, function = split_target(target)
    where = f"python:{target}"
    try:
        if module_name.endswith(".py"):
            if not Path(module_name).is_file():
                raise CheckpointError(f"{module_name}: file not found ({where})")
            spec = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:  # a module in the current folder, as `python -m` would find it
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except CheckpointError:
        raise
    except ImportError as err:
        raise CheckpointError(f"{where}: cannot import {module_name!r} ({err})") from None
    except Exception as err:  # noqa: BLE001 - the user's module may raise anything while it loads
        raise CheckpointError(f"{where}: importing {module_name!r} failed: {type(err).__name__}: {err}") from None
    build = getattr(module, function, None)
    if not callable(build):
        raise CheckpointError(f"{where}: {module_name!r} has no function {function!r}")
    try:
        result = build()
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"{where}: {function}() failed: {type(err).__name__}: {err}") from None
    if not (isinstance(result, tuple) and len(result) == 3 and isinstance(result[0], nn.Module)):
        raise CheckpointError(
            f"{where}: {function}() must return (nn.Module, classes, sample_rate), got {type(result).__name__}"
        )
    return result
