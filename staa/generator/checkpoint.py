"""Saving and loading trained STAA-Net generators, symmetric with `staa.models.victim`: the config, sample rate, classes
and the surrogates it was trained against travel with the weights. Surrogates are recorded relative to the checkpoint
(so a run folder stays valid when moved or copied), absolute as a fallback, and each with its SHA-256."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class GeneratorRecord:
    """What a generator checkpoint records beside its weights: the rate and classes it was trained at, its l-inf
    budget, its one target class (None: untargeted) and the surrogates it was trained against (as `surrogate_refs`)."""

    sample_rate: int | None = None
    classes: tuple[str, ...] = ()
    eps: float | None = None
    target: int | None = None
    surrogates: tuple[str, ...] = ()
    surrogates_absolute: tuple[str, ...] = ()
    surrogate_sha256: tuple[str, ...] = ()


def _read(path) -> tuple[dict, GeneratorRecord]:
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
    classes = check_classes(path, ckpt.get("classes", []))
    train_cfg = ckpt.get("train_config") or {}
    target = train_cfg.get("target") if train_cfg.get("targeted") else None
    n_classes = ckpt["config"].get("num_classes", 0)
    if target is not None and (
        isinstance(target, bool)
        or not isinstance(target, int)
        or not 0 <= target < max(n_classes if isinstance(n_classes, int) else 0, len(classes), 1)
    ):
        raise CheckpointError(f"{path}: its target class {target!r} is not a class index")
    eps = ckpt["config"].get("eps", GeneratorConfig.eps)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise CheckpointError(f"{path}: its eps {str(eps)[:40]!r} is not a number")
    record = GeneratorRecord(
        sample_rate=ckpt["sample_rate"],
        classes=tuple(classes),
        eps=_budget(eps),
        target=target,
        **{
            k: tuple(str(p) for p in ckpt.get(k, [])) for k in ("surrogates", "surrogates_absolute", "surrogate_sha256")
        },
    )
    return ckpt, record


def read_record(path) -> GeneratorRecord:
    """The checkpoint's record alone, without building the network."""
    return _read(path)[1]


def read_generator(path, *, device="cpu") -> tuple[STAAGenerator, GeneratorRecord]:
    """The generator (in eval mode) and its checkpoint's record."""
    ckpt, record = _read(path)
    check_state_dict(path, ckpt["state_dict"])
    try:
        gen = STAAGenerator(GeneratorConfig(**(ckpt["config"] | {"eps": record.eps})))
        gen.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a valid generator: {err}") from None
    return gen.to(device).eval(), record


def load_generator(path, *, device="cpu") -> STAAGenerator:
    """The generator alone (`read_generator` gives its record too)."""
    return read_generator(path, device=device)[0]


def resolve_surrogate(checkpoint, record: GeneratorRecord, override=None) -> str:
    """The file of the generator's first surrogate: `override` if given (said in the log), else the file its
    checkpoint records, found relative to the checkpoint (then at its absolute path) and checked by SHA-256."""
    if override:
        log.warning("%s: using the surrogate %s given instead of the one the generator records", checkpoint, override)
        return str(override)
    hint = "pass the surrogate explicitly (--surrogate, or surrogate=PATH in an attack spec)"
    if not record.surrogates:
        raise CheckpointError(f"{checkpoint}: records no surrogate; {hint}")
    if not record.surrogate_sha256:
        raise CheckpointError(
            f"{checkpoint}: records its surrogate {record.surrogates[0]} without a hash (an older staa-ser wrote it); {hint}"
        )
    recorded = record.surrogates[0]
    prefix, path = _prefix(recorded), Path(recorded.removeprefix(_prefix(recorded)))
    if prefix == "python:":  # a checkpoint is data: code to run comes only from the user's command line
        raise CheckpointError(
            f"{checkpoint}: its surrogate is code to run ({recorded[:80]!r}), never run from a file; {hint}"
        )
    candidates = [recorded if path.is_absolute() else prefix + str(Path(checkpoint).parent / path)]
    candidates += record.surrogates_absolute[:1]
    found = [c for c in candidates if source_path(c).exists()]
    for c in found:
        if fingerprint(c) == record.surrogate_sha256[0]:
            return c
    if found:
        raise CheckpointError(
            f"{found[0]}: is not the surrogate {checkpoint} was trained against (its SHA-256 differs); {hint}"
        )
    where = " or ".join(candidates)
    raise CheckpointError(f"{checkpoint}: its surrogate {recorded} is not there (looked for {where}); {hint}")
