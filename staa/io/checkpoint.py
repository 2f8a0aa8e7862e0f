"""Checkpoints as plain tensors and containers, loaded with `torch.load(weights_only=True)`.

Every checkpoint carries a `format` tag naming what it is ("staa-ser/victim", "staa-ser/generator"),
so a file that is not one of ours, or is the wrong kind, is refused with a clear message, and
loading can never execute code from the file.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
from pathlib import Path

import torch

from staa.io.atomic import atomic_open

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, not ours, tampered with, or of the wrong kind or sample rate."""


def save_checkpoint(path: str | os.PathLike, kind: str, payload: dict) -> Path:
    with atomic_open(path, "wb") as fh:
        torch.save({"format": f"staa-ser/{kind}", "format_version": FORMAT_VERSION, **payload}, fh)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, kind: str, required: tuple[str, ...] = ()) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"{path}: refused, it holds objects other than tensors and plain data ({first})"
        ) from None
    except Exception as err:  # noqa: BLE001 - a crafted or damaged file can make the unpickler raise anything
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint (corrupt, truncated or not a checkpoint): {first}"
        ) from None
    if not isinstance(ckpt, dict) or not str(ckpt.get("format", "")).startswith("staa-ser/"):
        raise CheckpointError(f"{path}: not a staa-ser checkpoint")
    if ckpt["format"] != f"staa-ser/{kind}":
        raise CheckpointError(f"{path}: is a {ckpt['format']} checkpoint, expected staa-ser/{kind}")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {ckpt.get('format_version')} is not supported ({FORMAT_VERSION})"
        )
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return ckpt


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_fields(path, ckpt: dict, types: dict) -> None:
    """Refuse a checkpoint whose fields are not of the expected type (`types`: key -> type or tuple of types)."""
    for key, kind in types.items():
        value = ckpt.get(key)
        if key in ckpt and (not isinstance(value, kind) or isinstance(value, bool) and kind in (int, (int,))):
            raise CheckpointError(
                f"{path}: field {key!r} is a {type(value).__name__}, expected {getattr(kind, '__name__', kind)}"
            )


def check_state_dict(path, state) -> None:
    """Refuse weights that are not a name -> tensor mapping, or that hold NaN or infinite values."""
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{path}: its weights are not a mapping of names to tensors")
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: weight {name} holds NaN or infinite values")


def check_sample_rate(path, rate) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int) or not 1_000 <= rate <= 384_000:
        raise CheckpointError(f"{path}: sample rate {rate!r} is not an integer within 1000-384000 Hz")
    return rate


def check_classes(path, classes) -> list[str]:
    if (
        not isinstance(classes, (list, tuple))
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise CheckpointError(f"{path}: classes must be a list of distinct names, got {classes!r}"[:300])
    return list(classes)


def training_state(opt, sched, state: dict) -> dict:
    """What a `last.pt` needs beyond the weights to resume a training loop exactly."""
    return {**state, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": torch.get_rng_state()}


def restore_training(path, ckpt: dict, model, opt, sched, state: dict) -> dict:
    """Load weights, optimiser, scheduler and RNG from the `last.pt` at `path`; returns its loop state (the keys of `state`)."""
    return resume_guard(path, lambda: _restore(ckpt, model, opt, sched, state))


def _restore(ckpt, model, opt, sched, state):
    model.load_state_dict(ckpt["state_dict"])
    opt.load_state_dict(ckpt["train_state"]["optimizer"])
    sched.load_state_dict(ckpt["train_state"]["scheduler"])
    torch.set_rng_state(ckpt["train_state"]["rng"])
    return check_loop_state(ckpt["train_state"], state)


def check_loop_state(saved, fresh: dict) -> dict:
    """The keys of `fresh` from a saved loop state, each of the type a fresh run starts with (counters finite and
    >= 0); a TypeError otherwise, which `resume_guard` reports."""
    if not isinstance(saved, dict) or set(fresh) - set(saved):
        raise TypeError(f"its loop state {str(saved)[:80]} is not a position in the run")
    loop = {k: saved[k] for k in fresh}
    for k, v in fresh.items():
        if (
            type(loop[k]) is not type(v)
            or isinstance(v, (int, float))
            and not math.isfinite(loop[k])
            or isinstance(v, int)
            and loop[k] < 0
        ):
            raise TypeError(f"{k} is {loop[k]!r}")
    return loop


def resume_guard(path, restore):
    """Run `restore()`, turning whatever a damaged or hand-edited `last.pt` makes it raise into one CheckpointError."""
    try:
        return restore()
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - anything a tampered file can make load_state_dict & co. raise
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise CheckpointError(
            f"{path}: cannot resume from it, it is damaged or was edited ({first}); rerun with --force to start over"
        ) from None
