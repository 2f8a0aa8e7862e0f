"""TorchScript victims (`torchscript:FILE`): the classes and sample rate come from the sidecar `FILE.json`
(`{"classes": [...], "sample_rate": 16000}`), or from the caller where there is none."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import torch

from staa.io.atomic import atomic_open
from staa.io.checkpoint import CheckpointError
from staa.io.validate import read_json_object


def sidecar(path: str | os.PathLike) -> Path:
    return Path(f"{path}.json")


def load_torchscript(path: str | os.PathLike, *, classes=None, sample_rate=None) -> tuple[torch.nn.Module, list, int]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: TorchScript file not found")
    meta = read_json_object(sidecar(path), CheckpointError) if sidecar(path).is_file() else {}
    classes = meta.get("classes", classes)
    sample_rate = meta.get("sample_rate", sample_rate)
    if classes is None or sample_rate is None:
        missing = " and ".join(k for k, v in (("classes", classes), ("sample_rate", sample_rate)) if v is None)
        raise CheckpointError(
            f"{path}: a TorchScript model does not say its {missing}; write {sidecar(path).name} beside it, e.g. "
            '{"classes": ["angry", "happy", "neutral", "sad"], "sample_rate": 16000}'
        )
    model = torchscript_from_bytes(path, path.read_bytes())
    return model, classes, sample_rate


def torchscript_from_bytes(path, data: bytes) -> torch.nn.Module:
    try:
        return torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
    except (RuntimeError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{path}: is not a TorchScript file torch can load: {first}") from None


def torchscript_bytes(model: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(model, buffer)
    return buffer.getvalue()


def save_torchscript(model: torch.nn.Module, path: str | os.PathLike, classes, sample_rate: int) -> Path:
    """The module and its sidecar, so `torchscript:PATH` (or plain `torch.jit.load`) loads it again."""
    with atomic_open(path, "wb") as fh:
        fh.write(torchscript_bytes(model))
    with atomic_open(sidecar(path)) as fh:
        json.dump({"classes": list(classes), "sample_rate": int(sample_rate)}, fh, indent=1)
    return Path(path)
