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
    """The source file the target's module comes from, found without running any code (a dotted module's parent
    packages are not imported), searched where `load_python` imports from: the current folder, then sys.path."""
    module, _ = split_target(target)
    if module.endswith(".py"):
        return Path(module)
    parts = module.split(".")
    if not all(p.isidentifier() for p in parts):
        return None
    for root in [os.getcwd(), *sys.path]:
        base = Path(root or ".").joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    spec = importlib.util.find_spec(parts[0]) if len(parts) == 1 else None  # a compiled or frozen top-level module
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
            # a module in the current folder, as `python -m` would find it; only for this import, so that a file
            # lying in the current folder never shadows a library imported later in the run
            saved = list(sys.path)
            sys.path.insert(0, os.getcwd())
            try:
                module = importlib.import_module(module_name)
            finally:
                sys.path[:] = saved
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
