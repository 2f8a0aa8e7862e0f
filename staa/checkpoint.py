"""Checkpoints as plain tensors and containers, loaded with `torch.load(weights_only=True)`.

Every checkpoint carries a `format` tag naming what it is ("staa-ser/victim", "staa-ser/generator"),
so a file that is not one of ours, or is the wrong kind, is refused with a clear message, and
loading can never execute code from the file.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from staa.atomic import atomic_open

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
        raise CheckpointError(f"{path}: refused, it holds objects other than tensors and plain data ({first})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable torch checkpoint (corrupt or truncated?): {err}") from None
    if not isinstance(ckpt, dict) or not str(ckpt.get("format", "")).startswith("staa-ser/"):
        raise CheckpointError(f"{path}: not a staa-ser checkpoint")
    if ckpt["format"] != f"staa-ser/{kind}":
        raise CheckpointError(f"{path}: is a {ckpt['format']} checkpoint, expected staa-ser/{kind}")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {ckpt.get('format_version')} is not supported ({FORMAT_VERSION})")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return ckpt


def training_state(opt, sched, state: dict) -> dict:
    """What a `last.pt` needs beyond the weights to resume a training loop exactly."""
    return {**state, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": torch.get_rng_state()}


def restore_training(ckpt: dict, model, opt, sched, state: dict) -> dict:
    """Load weights, optimiser, scheduler and RNG from a `last.pt`; returns its loop state (the keys of `state`)."""
    model.load_state_dict(ckpt["state_dict"])
    opt.load_state_dict(ckpt["train_state"]["optimizer"])
    sched.load_state_dict(ckpt["train_state"]["scheduler"])
    torch.set_rng_state(ckpt["train_state"]["rng"])
    return {k: ckpt["train_state"][k] for k in state}
