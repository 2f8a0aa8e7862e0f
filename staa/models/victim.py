"""Victims: a model from waveforms `[B, T]` to logits `[B, C]`, with its classes and sample rate.

`load_victim(SPEC)` takes a staa-ser checkpoint (a path), or a user's own model behind a prefix:
`hf:DIR` (a Hugging Face audio classifier, `staa.models.huggingface`), `torchscript:FILE` (`staa.models.torchscript`)
or `python:module:function` (`staa.models.python_victim`). A staa-ser checkpoint of a fine-tuned user model records
its format in `arch` ("hf" with its stored config, "torchscript" with its program) and loads the same way as a zoo
one. A checkpoint is data: one that names code to import (`python:...`) is refused, never run.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from staa.io.checkpoint import (
    CheckpointError,
    check_classes,
    check_fields,
    check_sample_rate,
    check_state_dict,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)
from staa.models import MODELS, build_model

log = logging.getLogger(__name__)
VICTIM_KEYS = ("arch", "config", "classes", "sample_rate", "state_dict")
KINDS = ("hf", "torchscript", "python")  # the prefixes of a user's model: hf:DIR, torchscript:FILE, python:...


def split_spec(spec: str | os.PathLike) -> tuple[str, str]:
    """("hf", "DIR") for "hf:DIR", likewise torchscript and python; ("", spec) for a staa-ser checkpoint."""
    kind, sep, target = str(spec).partition(":")
    return (kind, target) if sep and kind in KINDS else ("", str(spec))


@dataclass
class Victim:
    model: nn.Module
    arch: str  # a zoo architecture, or the format of a user's model: hf, torchscript, python:module:function
    classes: list[str]
    sample_rate: int
    config: dict
    source: str = ""  # what it was loaded from, as the user named it
    checks: dict = field(default_factory=dict)  # staa.models.checks results, when run


def save_victim(path: str | os.PathLike, model: nn.Module, arch: str, classes, sample_rate: int, **extra) -> None:
    payload = {"arch": arch, "config": dict(getattr(model, "config", {})), "state_dict": model.state_dict()}
    if arch == "torchscript":  # the program travels with its weights: there is no class to rebuild it from
        from staa.models.torchscript import torchscript_bytes

        payload["torchscript"] = torch.frombuffer(bytearray(torchscript_bytes(model)), dtype=torch.uint8)
    save_checkpoint(path, "victim", {**payload, "classes": list(classes), "sample_rate": int(sample_rate), **extra})


def load_victim(
    spec: str | os.PathLike,
    *,
    sample_rate: int | None = None,
    classes: list[str] | None = None,
    device: str | torch.device = "cpu",
    check: bool = False,
) -> Victim:
    """Load a victim in eval mode. `sample_rate`, if given, must be the model's; `classes` and `sample_rate` also
    stand in for a TorchScript file's missing sidecar. `check` runs the self-checks (`staa.models.checks`)."""
    text = str(spec)
    if split_spec(text)[0]:
        model, names, rate, arch = _load_external(text, classes, sample_rate)
        config = dict(getattr(model, "config", {}))
    else:
        model, names, rate, arch, config = _load_checkpoint(text)
    names = list(check_classes(text, names))
    if len(names) < 2:
        raise CheckpointError(f"{text}: a victim needs at least 2 classes, got {names}")
    check_sample_rate(text, rate)
    if sample_rate is not None and rate != sample_rate:
        raise CheckpointError(f"{text}: the victim was trained at {rate} Hz, but the data is at {sample_rate} Hz")
    model.to(device).eval()
    victim = Victim(model, arch, names, int(rate), config, source=text)
    if check:
        from staa.models.checks import check_victim, flags

        try:
            victim.checks = check_victim(model, victim.sample_rate, len(names), device=device)
        except (ValueError, RuntimeError) as err:  # the output's shape, or a model that cannot take a 1 s clip
            raise CheckpointError(f"{text}: {err}") from None
        for flag in flags(victim.checks):
            log.log(
                logging.WARNING if flag in flags(victim.checks, informative=False) else logging.INFO,
                "%s: %s",
                text,
                flag,
            )
    return victim


def _load_external(text: str, classes, sample_rate):
    kind, target = split_spec(text)
    if kind == "hf":
        from staa.models.huggingface import load_hf

        return (*load_hf(target), "hf")
    if kind == "torchscript":
        from staa.models.torchscript import load_torchscript

        return (*load_torchscript(target, classes=classes, sample_rate=sample_rate), "torchscript")
    from staa.models.python_victim import load_python

    return (*load_python(target), text)


def _printable(text: str, limit: int = 80) -> str:
    """`text` as one safe line for a message: repr escapes control characters (ANSI escapes too)."""
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _load_checkpoint(path: str):
    ckpt = load_checkpoint(path, "victim", VICTIM_KEYS)
    check_fields(path, ckpt, {"arch": str, "config": dict})
    arch = ckpt["arch"]
    check_sample_rate(path, ckpt["sample_rate"])
    if len(check_classes(path, ckpt["classes"])) < 2:
        raise CheckpointError(f"{path}: a victim needs at least 2 classes, got {ckpt['classes']}")
    check_state_dict(path, ckpt["state_dict"])
    try:
        if arch in MODELS:
            model = build_model(arch, len(ckpt["classes"]), ckpt["sample_rate"], **ckpt["config"])
        elif arch == "hf":
            from staa.models.huggingface import hf_from_config

            model = hf_from_config(path, ckpt["config"])
        elif arch == "torchscript" and isinstance(ckpt.get("torchscript"), torch.Tensor):
            from staa.models.torchscript import torchscript_from_bytes

            model = torchscript_from_bytes(path, ckpt["torchscript"].numpy().tobytes())
        elif arch.startswith("python"):
            # a checkpoint is data: the code a model is built by comes only from the user's own command line
            raise CheckpointError(
                f"{path}: names code to run ({_printable(arch)}); a checkpoint never runs code: name the code "
                "yourself (--victim python:module:function) and load this file's state_dict into what it builds"
            )
        else:
            raise CheckpointError(
                f"{path}: unknown architecture {_printable(arch)} (expected one of {', '.join(MODELS)}, hf, torchscript)"
            )
        model.load_state_dict(ckpt["state_dict"])
    except (ValueError, RuntimeError, TypeError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{path}: weights and config do not fit architecture {arch}: {err}") from None
    return model, ckpt["classes"], ckpt["sample_rate"], arch, dict(ckpt["config"])


def source_files(spec: str | os.PathLike) -> list[Path]:
    """The files a victim spec reads: what run folders hash to notice a changed input."""
    kind, target = split_spec(spec)
    if kind == "hf":
        folder = Path(target)
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else [folder]
    if kind == "torchscript":
        from staa.models.torchscript import sidecar

        return [Path(target)] + ([sidecar(target)] if sidecar(target).is_file() else [])
    if kind == "python":
        from staa.models.python_victim import module_file

        found = module_file(target)
        return [found] if found else []
    return [Path(target)]


def source_path(spec: str | os.PathLike) -> Path | None:
    """The file or folder a victim spec names (None for a python: target whose module is not found)."""
    kind, target = split_spec(spec)
    if kind == "python":
        from staa.models.python_victim import module_file

        return module_file(target)
    return Path(target)


def fingerprint(spec: str | os.PathLike) -> str:
    """SHA-256 over the victim's files (one file: that file's own SHA-256)."""
    files = source_files(spec)
    if not files:  # never the hash of nothing: any unfound module would match it
        raise CheckpointError(f"{spec}: its source file cannot be found, so it cannot be fingerprinted")
    if len(files) == 1 and split_spec(spec)[0] != "hf":
        return file_sha256(files[0])
    h = hashlib.sha256()
    root = source_path(spec)
    for f in files:
        name = f.relative_to(root).as_posix() if root and f.is_relative_to(root) else f.name
        h.update(f"{name}\t{file_sha256(f)}\n".encode())
    return h.hexdigest()
