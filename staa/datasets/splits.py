"""Picking a split out of a dataset's records."""

from __future__ import annotations

import os
from pathlib import Path

from staa.datasets.records import DatasetError, Record


def split_records(records: list[Record], name: str) -> list[Record]:
    """The records of split `name`; none is an error that names where the clips are and the splits they have."""
    got = [r for r in records if r.split == name]
    if not got:
        where = os.path.commonpath([str(Path(r.path).parent) for r in records]) if records else "the dataset"
        have = ", ".join(sorted({str(r.split) for r in records})) or "none"
        raise DatasetError(
            f"{where}: no clips in the {name!r} split (its splits: {have}); training needs train and val"
        )
    return got
