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
    load_checkpoint,
    save_checkpoint,
)
from staa.models.victim import fingerprint, source_path, split_spec

log = logging.getLogger(__name__)


def _budget(eps) -> float:
    """The generator keeps eps in a float32 buffer: 0.03 comes back as 0.029999999, another budget than PGD's 0.03."""
    return float(f"{float(eps):.6g}")


def save_generator(path, gen: STAAGenerator, *, sample_rate: int, classes, surrogates, **extra) -> None:
    """Write `gen` (its current eps included) with the surrogate checkpoints it was trained against."""
    save_checkpoint(
        path,
        "generator",
        {
            "config": gen.config | {"eps": _budget(gen.eps)},
            "state_dict": gen.state_dict(),
            "sample_rate": int(sample_rate),
            "classes": list(classes),
            **surrogate_refs(path, surrogates),
            **extra,
        },
    )


def _prefix(spec: str) -> str:
    kind = split_spec(spec)[0]
    return f"{kind}:" if kind else ""


def surrogate_refs(checkpoint, surrogates) -> dict:
    """How a generator checkpoint at `checkpoint` names its surrogates (victim specs): relative to its own folder (so
    a run tree stays valid when moved or copied), absolute as a fallback, and each with its SHA-256 (`fingerprint`)."""
    folder = Path(checkpoint).resolve().parent
    relative, absolute = [], []
    for spec in map(str, surrogates):
        path = None if split_spec(spec)[0] == "python" else source_path(spec)
        if path is None:  # code, found by its module name wherever the run tree lies
            relative.append(spec)
            absolute.append(spec)
            continue
        relative.append(_prefix(spec) + os.path.relpath(path.resolve(), folder))
        absolute.append(_prefix(spec) + str(path.resolve()))
    return {
        "surrogates": relative,
        "surrogates_absolute": absolute,
        "surrogate_sha256": [fingerprint(s) for s in surrogates],
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
        config = ckpt["config"] | ({"eps": _budget(ckpt["config"]["eps"])} if "eps" in ckpt["config"] else {})
        gen = STAAGenerator(GeneratorConfig(**config))
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


def resolve_surrogate(checkpoint, gen: STAAGenerator, override=None) -> str:
    """The file of the generator's first surrogate: `override` if given (said in the log), else the file its
    checkpoint records, found relative to the checkpoint (then at its absolute path) and checked by SHA-256."""
    if override:
        log.warning("%s: using the surrogate %s given instead of the one the generator records", checkpoint, override)
        return str(override)
    hint = "pass the surrogate explicitly (--surrogate, or surrogate=PATH in an attack spec)"
    if not gen.surrogates:
        raise CheckpointError(f"{checkpoint}: records no surrogate; {hint}")
    if not gen.surrogate_sha256:
        raise CheckpointError(
            f"{checkpoint}: records its surrogate {gen.surrogates[0]} without a hash (an older staa-ser wrote it); {hint}"
        )
    recorded = gen.surrogates[0]
    prefix, path = _prefix(recorded), Path(recorded.removeprefix(_prefix(recorded)))
    if prefix == "python:":  # a checkpoint is data: code to run comes only from the user's command line
        raise CheckpointError(
            f"{checkpoint}: its surrogate is code to run ({recorded[:80]!r}), never run from a file; {hint}"
        )
    candidates = [recorded if path.is_absolute() else prefix + str(Path(checkpoint).parent / path)]
    candidates += gen.surrogates_absolute[:1]
    found = [c for c in candidates if source_path(c).exists()]
    for c in found:
        if fingerprint(c) == gen.surrogate_sha256[0]:
            return c
    if found:
        raise CheckpointError(
            f"{found[0]}: is not the surrogate {checkpoint} was trained against (its SHA-256 differs); {hint}"
        )
    where = " or ".join(candidates)
    raise CheckpointError(f"{checkpoint}: its surrogate {recorded} is not there (looked for {where}); {hint}")
