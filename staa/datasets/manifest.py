"""A CSV manifest: any dataset, and the built-in corpus.

Columns: `path` (absolute, or relative to the CSV's folder) and `label` are required; `speaker` and
`split` (train/val/test) are optional. Without `split`, speakers are split at random (seeded); without
`speaker` there is no speaker-independent split and the file is refused unless `split` is given.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from staa.datasets.records import SPLITS, DatasetError, Record, Scan, with_speaker_splits


def load_manifest(path, *, classes=None, seed: int = 0, on_error: str = "raise", verify: bool = True) -> list[Record]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found")
    # utf-8-sig: spreadsheets' "CSV UTF-8" starts with a byte-order mark (CRLF line ends the csv module reads as is)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"{path}: is not UTF-8 text ({err.reason} at byte {err.start}); save it as CSV UTF-8"
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = set(reader.fieldnames or ())
        missing = {"path", "label"} - columns
        if missing:
            raise DatasetError(f"{path}: manifest lacks column(s) {', '.join(sorted(missing))}")
        if not {"speaker", "split"} & columns:
            raise DatasetError(
                f"{path}: manifest needs a 'speaker' or a 'split' column for a speaker-independent split"
            )
        rows = list(reader)
    except csv.Error as err:  # a field past the csv module's limit (131072 characters), a NUL byte
        raise DatasetError(f"{path}:{reader.line_num + 1}: is not a readable CSV row ({err})") from None
    scan = Scan(f"manifest {path}", on_error)
    keep = set(classes) if classes is not None else None
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        audio = Path(row["path"] or "")
        audio = audio if audio.is_absolute() else path.parent / audio
        key = os.path.realpath(audio)
        if key in seen:  # counted twice, a clip would weigh twice in every rate and narrow every interval
            raise DatasetError(
                f"{path}:{line}: {row['path']} is listed again (first on line {seen[key]}); list each clip once"
            )
        seen[key] = line
        label = (row.get("label") or "").strip()
        split = (row.get("split") or "").strip() if "split" in columns else "train"
        if not label:
            scan.bad(f"{path}:{line}", "empty label")
            continue
        if not split:
            scan.bad(f"{path}:{line}", "empty split (train, val or test)")
            continue
        if split not in SPLITS:
            scan.bad(f"{path}:{line}", f"split {split!r} is not one of {', '.join(SPLITS)}")
            continue
        if keep is None or label in keep:
            scan.add(audio, label, (row.get("speaker") or "").strip() or "unknown", split, verify)
    records = scan.done()
    return records if "split" in columns else with_speaker_splits(records, seed)
