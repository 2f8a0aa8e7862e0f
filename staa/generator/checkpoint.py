"""Saving and loading trained STAA-Net generators, symmetric with `staa.models.victim`: the config, sample rate, classes
and the surrogates it was trained against travel with the weights. Surrogates are recorded relative to the checkpoint
(so a run folder stays valid when moved or copied), absolute as a fallback, and each with its SHA-256."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from staa.generator.network import GeneratorConfig, STAAGenerator
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

log = logging.getLogger(__name__)


def save_generator(path, gen: STAAGenerator, *, sample_rate: int, classes, surrogates, **extra) -> None:
    """Write `gen` (its current eps included) with the surrogate checkpoints it was trained against."""
    save_checkpoint(
        path,
        "generator",
        {
            "config": gen.config | {"eps": float(gen.eps)},
            "state_dict": gen.state_dict(),
            "sample_rate": int(sample_rate),
            "classes": list(classes),
            **surrogate_refs(path, surrogates),
            **extra,
        },
    )


def surrogate_refs(checkpoint, surrogates) -> dict:
    """How a generator checkpoint at `checkpoint` names its surrogates: relative to its own folder (so a run tree
    stays valid when moved or copied), absolute as a fallback, and each with its SHA-256."""
    folder = Path(checkpoint).resolve().parent
    paths = [Path(p).resolve() for p in surrogates]
    return {
        "surrogates": [os.path.relpath(p, folder) for p in paths],
        "surrogates_absolute": [str(p) for p in paths],
        "surrogate_sha256": [file_sha256(p) for p in paths],
    }


def load_generator(path, *, device="cpu") -> STAAGenerator:
    ckpt = load_checkpoint(path, "generator", ("config", "state_dict", "sample_rate"))
    check_fields(
        path,
        ckpt,
        {
            "config": dict,
            "surrogates": list,
            "surrogates_absolute": list,
            "surrogate_sha256": list,
            "train_config": dict,
        },
    )
    check_sample_rate(path, ckpt["sample_rate"])
    check_state_dict(path, ckpt["state_dict"])
    try:
        gen = STAAGenerator(GeneratorConfig(**ckpt["config"]))
        gen.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a valid generator: {err}") from None
    gen.sample_rate = ckpt["sample_rate"]
    gen.classes = check_classes(path, ckpt.get("classes", []))
    gen.surrogates = [str(p) for p in ckpt.get("surrogates", [])]
    gen.surrogates_absolute = [str(p) for p in ckpt.get("surrogates_absolute", [])]
    gen.surrogate_sha256 = [str(p) for p in ckpt.get("surrogate_sha256", [])]
    train_cfg = ckpt.get("train_config") or {}
    target = train_cfg.get("target") if train_cfg.get("targeted") else None
    if target is not None and (
        isinstance(target, bool)
        or not isinstance(target, int)
        or not 0 <= target < max(gen.cfg.num_classes, len(gen.classes), 1)
    ):
        raise CheckpointError(f"{path}: its target class {target!r} is not a class index")
    gen.target = target
    return gen.to(device).eval()


def resolve_surrogate(checkpoint, gen: STAAGenerator, override=None) -> Path:
    """The file of the generator's first surrogate: `override` if given (said in the log), else the file its
    checkpoint records, found relative to the checkpoint (then at its absolute path) and checked by SHA-256."""
    if override:
        log.warning("%s: using the surrogate %s given instead of the one the generator records", checkpoint, override)
        return Path(override)
    hint = "pass the surrogate explicitly (--surrogate, or surrogate=PATH in an attack spec)"
    if not gen.surrogates:
        raise CheckpointError(f"{checkpoint}: records no surrogate; {hint}")
    if not gen.surrogate_sha256:
        raise CheckpointError(
            f"{checkpoint}: records its surrogate {gen.surrogates[0]} without a hash (an older staa-ser wrote it); {hint}"
        )
    recorded = Path(gen.surrogates[0])
    candidates = [recorded] if recorded.is_absolute() else [Path(checkpoint).parent / recorded]
    candidates += [Path(p) for p in gen.surrogates_absolute[:1]]
    found = [c for c in candidates if c.is_file()]
    for c in found:
        if file_sha256(c) == gen.surrogate_sha256[0]:
            return c
    if found:
        raise CheckpointError(
            f"{found[0]}: is not the surrogate {checkpoint} was trained against (its SHA-256 differs); {hint}"
        )
    where = " or ".join(str(c) for c in candidates)
    raise CheckpointError(f"{checkpoint}: its surrogate {recorded} is not there (looked for {where}); {hint}")
