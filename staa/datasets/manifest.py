"""A CSV manifest: any dataset, and the built-in corpus.

Columns: `path` (absolute, or relative to the CSV's folder) and `label` are required; `speaker` and
`split` (train/val/test) are optional. Without `split`, speakers are split at random (seeded); without
`speaker` there is no speaker-independent split and the file is refused unless `split` is given.
"""

from __future__ import annotations

import csv
from pathlib import Path

from staa.datasets.records import SPLITS, DatasetError, Record, Scan, with_speaker_splits


def load_manifest(path, *, classes=None, seed: int = 0, on_error: str = "raise", verify: bool = True) -> list[Record]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or ())
        missing = {"path", "label"} - columns
        if missing:
            raise DatasetError(f"{path}: manifest lacks column(s) {', '.join(sorted(missing))}")
        if not {"speaker", "split"} & columns:
            raise DatasetError(
                f"{path}: manifest needs a 'speaker' or a 'split' column for a speaker-independent split"
            )
        rows = list(reader)
    scan = Scan(f"manifest {path}", on_error)
    keep = set(classes) if classes is not None else None
    for line, row in enumerate(rows, start=2):
        audio = Path(row["path"])
        audio = audio if audio.is_absolute() else path.parent / audio
        label, split = (row.get("label") or "").strip(), (row.get("split") or "train").strip()
        if not label:
            scan.bad(f"{path}:{line}", "empty label")
            continue
        if split not in SPLITS:
            scan.bad(f"{path}:{line}", f"split {split!r} is not one of {', '.join(SPLITS)}")
            continue
        if keep is None or label in keep:
            scan.add(audio, label, (row.get("speaker") or "").strip() or "unknown", split, verify)
    records = scan.done()
    return records if "split" in columns else with_speaker_splits(records, seed)
