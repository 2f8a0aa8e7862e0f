"""Saving and loading trained victims: architecture, config, classes and sample rate travel with the weights."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from staa.io.checkpoint import (
    CheckpointError,
    check_classes,
    check_fields,
    check_sample_rate,
    check_state_dict,
    load_checkpoint,
    save_checkpoint,
)
from staa.models import MODELS, build_model

VICTIM_KEYS = ("arch", "config", "classes", "sample_rate", "state_dict")


@dataclass
class Victim:
    model: nn.Module
    arch: str
    classes: list[str]
    sample_rate: int
    config: dict


def save_victim(path: str | os.PathLike, model: nn.Module, arch: str, classes, sample_rate: int, **extra) -> None:
    save_checkpoint(
        path,
        "victim",
        {
            "arch": arch,
            "config": dict(model.config),
            "classes": list(classes),
            "sample_rate": int(sample_rate),
            "state_dict": model.state_dict(),
            **extra,
        },
    )


def load_victim(
    path: str | os.PathLike, *, sample_rate: int | None = None, device: str | torch.device = "cpu"
) -> Victim:
    """Load a trained victim in eval mode; `sample_rate` (if given) must match the one it was trained at."""
    ckpt = load_checkpoint(path, "victim", VICTIM_KEYS)
    check_fields(path, ckpt, {"arch": str, "config": dict})
    if ckpt["arch"] not in MODELS:
        raise CheckpointError(f"{path}: unknown architecture {ckpt['arch']!r}")
    check_sample_rate(path, ckpt["sample_rate"])
    if len(check_classes(path, ckpt["classes"])) < 2:
        raise CheckpointError(f"{path}: a victim needs at least 2 classes, got {ckpt['classes']}")
    check_state_dict(path, ckpt["state_dict"])
    if sample_rate is not None and ckpt["sample_rate"] != sample_rate:
        raise CheckpointError(
            f"{path}: the victim was trained at {ckpt['sample_rate']} Hz, but the data is at {sample_rate} Hz"
        )
    try:
        model = build_model(ckpt["arch"], len(ckpt["classes"]), ckpt["sample_rate"], **ckpt["config"])
        model.load_state_dict(ckpt["state_dict"])
    except (ValueError, RuntimeError, TypeError) as err:
        raise CheckpointError(f"{path}: weights and config do not fit architecture {ckpt['arch']}: {err}") from None
    model.to(device).eval()
    return Victim(model, ckpt["arch"], list(ckpt["classes"]), ckpt["sample_rate"], dict(ckpt["config"]))
