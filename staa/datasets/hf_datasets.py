"""Corpora kept the Hugging Face way: a `save_to_disk` folder of the `datasets` library, or an `audiofolder` layout.

- `save_to_disk`: a DatasetDict (splits train, validation / valid / dev / val, test) or one Dataset with a `split`
  column; the first `Audio` column is the audio, `label` (a ClassLabel or text; else `emotion`) the class and
  `speaker` / `speaker_id` / `client_id` the speaker. The `datasets` library is an optional extra
  (`pip install staa-ser[hf]`), imported only here. `save_to_disk` embeds the audio as bytes, which staa-ser reads as
  files: they are written once under a cache folder ($STAA_CACHE, else ~/.cache/staa-ser), never into the dataset.
- `audiofolder`: DIR/SPLIT/LABEL/*.wav, or DIR/SPLIT/*.wav with DIR/SPLIT/metadata.csv (`file_name`, `label`,
  optionally `speaker`), SPLIT as above.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

from staa.datasets.records import SPLITS, DatasetError, Scan, require_dir
from staa.io.atomic import atomic_open, safe_name

SPLIT_NAMES = {"train": "train", "validation": "val", "valid": "val", "dev": "val", "val": "val", "test": "test"}
SPEAKER_COLUMNS = ("speaker", "speaker_id", "client_id")
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aiff", ".aif"}


def load_hf_dataset(root, *, classes=None, seed: int = 0, on_error: str = "raise", verify: bool = True):
    root = require_dir(root, "Hugging Face dataset")
    scan = Scan(f"Hugging Face dataset {root}", on_error)
    keep = set(classes) if classes is not None else None
    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        _saved(root, scan, keep, verify)
    else:
        _audiofolder(root, scan, keep, verify)
    return scan.done()


def _split(root: Path, name: str) -> str:
    if name not in SPLIT_NAMES:
        raise DatasetError(f"{root}: split {name!r} is not one of {', '.join(SPLIT_NAMES)}")
    return SPLIT_NAMES[name]


def _audiofolder(root: Path, scan: Scan, keep, verify: bool) -> None:
    splits = sorted(p for p in root.iterdir() if p.is_dir() and p.name in SPLIT_NAMES)
    if not splits:
        raise DatasetError(
            f"{root}: neither a save_to_disk folder nor an audiofolder with split folders "
            f"({', '.join(SPLIT_NAMES)}); a manifest CSV with a split column takes any other layout"
        )
    for folder in splits:
        split = _split(root, folder.name)
        meta = folder / "metadata.csv"
        if meta.is_file():
            with open(meta, newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.DictReader(fh))
            if rows and not {"file_name", "label"} <= set(rows[0]):
                raise DatasetError(f"{meta}: needs the columns file_name and label")
            for line, row in enumerate(rows, start=2):
                label = (row.get("label") or "").strip()
                if not label:
                    scan.bad(f"{meta}:{line}", "empty label")
                elif keep is None or label in keep:
                    scan.add(folder / row["file_name"], label, _speaker(row), split, verify)
            continue
        for label_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            if keep is not None and label_dir.name not in keep:
                continue
            for path in sorted(label_dir.rglob("*")):
                if path.suffix.lower() in AUDIO_SUFFIXES:
                    scan.add(path, label_dir.name, "unknown", split, verify)


def _speaker(row: dict) -> str:
    return next((str(row[k]).strip() for k in SPEAKER_COLUMNS if row.get(k) not in (None, "")), "unknown")


def _cache(root: Path) -> Path:
    """Where the embedded audio of `root` is written: one folder per dataset and version (its fingerprints)."""
    states = sorted(root.rglob("state.json"))
    key = hashlib.sha256(os.path.realpath(root).encode())
    for state in states:
        key.update(state.read_bytes())
    base = Path(os.environ.get("STAA_CACHE") or Path.home() / ".cache" / "staa-ser")
    return base / "hf-datasets" / key.hexdigest()[:16]


def _saved(root: Path, scan: Scan, keep, verify: bool) -> None:
    try:
        import datasets
    except ImportError:
        raise DatasetError(
            f"{root}: is a datasets save_to_disk folder; reading it needs the datasets library "
            "(pip install 'staa-ser[hf]'), or export it as a manifest CSV"
        ) from None
    datasets.disable_progress_bars()
    try:
        loaded = datasets.load_from_disk(str(root))
    except Exception as err:  # noqa: BLE001 - a truncated arrow file, a bad dataset_info.json: any of its errors
        raise DatasetError(f"{root}: the datasets library cannot load it ({str(err).splitlines()[0][:200]})") from None
    parts = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    cache = _cache(root)
    for name, ds in parts:
        audio = next((k for k, f in ds.features.items() if isinstance(f, datasets.Audio)), None)
        label = next((k for k in ("label", "emotion") if k in ds.features), None)
        if audio is None or label is None:
            raise DatasetError(f"{root}: split {name or 'all'} needs an Audio column and a label (or emotion) column")
        if name is None and "split" not in ds.features:
            raise DatasetError(
                f"{root}: a single Dataset needs a split column (train, val or test), or save a DatasetDict"
            )
        names = ds.features[label].names if isinstance(ds.features[label], datasets.ClassLabel) else None
        wanted = {audio, label, "split", *SPEAKER_COLUMNS}
        columns = {k: ds.data.column(k).to_pylist() for k in ds.column_names if k in wanted}
        for i, cell in enumerate(columns[audio]):
            where = f"{root} ({name or 'dataset'} row {i})"
            value = columns[label][i]
            text = names[value] if names is not None and isinstance(value, int) and 0 <= value < len(names) else value
            split = SPLIT_NAMES.get(str(columns["split"][i]) if name is None else name)
            if split not in SPLITS:
                raise DatasetError(
                    f"{where}: split {name or columns['split'][i]!r} is not one of {', '.join(SPLIT_NAMES)}"
                )
            if not isinstance(text, str) or not text:
                scan.bad(where, f"label {value!r} is not a class name")
                continue
            if keep is not None and text not in keep:
                continue
            path = _audio_file(root, cache, name or "dataset", i, cell)
            if path is None:
                scan.bad(where, "its audio cell holds neither bytes nor a file path")
                continue
            scan.add(path, text, _speaker({k: columns[k][i] for k in SPEAKER_COLUMNS if k in columns}), split, verify)


def _audio_file(root: Path, cache: Path, part: str, i: int, cell) -> Path | None:
    if not isinstance(cell, dict):
        return None
    if cell.get("bytes"):
        target = cache / safe_name(part) / f"{i:07d}_{safe_name(Path(str(cell.get('path') or 'audio.wav')).name)}"
        if not target.is_file() or target.stat().st_size != len(cell["bytes"]):
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(target, "wb") as fh:
                fh.write(cell["bytes"])
        return target
    if cell.get("path"):
        path = Path(cell["path"])
        return path if path.is_absolute() else root / path
    return None
