"""What every dataset loader returns: a list of `Record`s, plus the shared checks and split rules."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from staa.io.audio import AudioError, load_audio

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset folder or file that does not follow the dataset's conventions."""


@dataclass(frozen=True)
class Record:
    path: str  # absolute path of the audio file
    label: str  # class name, e.g. "angry"
    speaker: str
    split: str = "train"


@dataclass
class Scan:
    """Collects records of one dataset; bad files raise, or are skipped and counted with on_error="skip"."""

    source: str
    on_error: str = "raise"
    records: list[Record] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self):
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {self.on_error!r}")

    def bad(self, path: str | os.PathLike, problem: str) -> None:
        if self.on_error == "raise":
            raise DatasetError(f"{path}: {problem}")
        log.warning("skipping %s: %s", path, problem)
        self.skipped.append((str(path), problem))

    def add(self, path: Path, label: str, speaker: str, split: str = "train", verify: bool = True) -> None:
        """`verify` decodes the whole file with the checks a model's input gets (mono, finite, in range, not clipped,
        a plausible rate), so a bad file is found before training starts, not when a batch first reads it."""
        if verify:
            try:
                load_audio(path, None)
            except AudioError as err:
                return self.bad(path, err.problem)
        self.records.append(Record(str(path), label, speaker, split))

    def done(self) -> list[Record]:
        if self.skipped:
            log.warning("%s: skipped %d bad file(s), kept %d", self.source, len(self.skipped), len(self.records))
        if not self.records:
            raise DatasetError(f"{self.source}: no usable audio files found")
        return self.records


def with_known_labels(records: list[Record], classes, source: str, *, skip: bool = False) -> list[Record]:
    """The records whose label is one of `classes` (a model's). Others are an error naming each unknown label and
    its count, or, with `skip`, left out with a warning saying as much: never dropped in silence."""
    known = set(classes)
    unknown: dict[str, int] = {}
    for r in records:
        if r.label not in known:
            unknown[r.label] = unknown.get(r.label, 0) + 1
    if not unknown:
        return records
    lower = {c.lower(): c for c in classes}
    named = ", ".join(
        f"{label!r} ({n})" + (f", did you mean {lower[label.lower()]!r}?" if label.lower() in lower else "")
        for label, n in sorted(unknown.items(), key=lambda kv: -kv[1])[:5]
    )
    count = sum(unknown.values())
    what = f"{source}: {count} clip(s) have labels the model does not know: {named}; its classes: {', '.join(classes)}"
    if not skip:
        raise DatasetError(f"{what}. Fix the labels, choose classes (--classes), or leave them out with --skip-bad")
    log.warning("%s; left out (--skip-bad)", what)
    return [r for r in records if r.label in known]


def require_dir(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} folder not found")
    return path


def speaker_splits(speakers, shares=(0.7, 0.15, 0.15), seed: int = 0) -> dict[str, str]:
    """Assign whole speakers to train/val/test (speaker-independent), deterministically from `seed`."""
    speakers = sorted(set(speakers))
    if len(speakers) < 3:
        raise DatasetError(f"a speaker-independent split needs at least 3 speakers, found {len(speakers)}")
    order = [speakers[i] for i in np.random.default_rng(seed).permutation(len(speakers))]
    n_test = max(1, round(shares[2] * len(speakers)))
    n_val = max(1, round(shares[1] * len(speakers)))
    split = {s: "test" for s in order[:n_test]}
    split.update({s: "val" for s in order[n_test : n_test + n_val]})
    split.update({s: "train" for s in order[n_test + n_val :]})
    return split


def with_speaker_splits(records: list[Record], seed: int = 0) -> list[Record]:
    split = speaker_splits([r.speaker for r in records], seed=seed)
    return [Record(r.path, r.label, r.speaker, split[r.speaker]) for r in records]


def map_label(scan: Scan, path: Path, code: str, codes: dict[str, str], keep: set[str] | None) -> str | None:
    """Class name for a dataset's label `code`; None where the class is outside `keep` (not an error)."""
    if code not in codes:
        scan.bad(path, f"unknown emotion code {code!r} (known: {', '.join(sorted(codes))})")
        return None
    label = codes[code]
    return label if keep is None or label in keep else None
