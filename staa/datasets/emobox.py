"""EmoBox folds (Interspeech 2024, emo-box/EmoBox): the benchmark's fixed train / test splits, as JSONL files.

    FOLDS/label_map.json                          {"neu": "Neutral", "exc": "Happy", ...}: emotion code -> class
    FOLDS/fold_K/NAME_train_fold_K.jsonl          one utterance a line: {"key", "wav", "emo", ...}
    FOLDS/fold_K/NAME_test_fold_K.jsonl

`wav` is relative to the folder the corpus was unpacked under (`--data ROOT`), or absolute. EmoBox fixes train and
test only; val is a seeded tenth of the fold's train clips, so the test clips are exactly the leaderboard's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from staa.datasets.records import DatasetError, Record, Scan, map_label, require_dir

VAL_SHARE = 0.1


def _fold_file(folder: Path, split: str, fold: int) -> Path:
    found = sorted(folder.glob(f"*_{split}_fold_{fold}.jsonl"))
    if len(found) != 1:
        raise DatasetError(
            f"{folder}: expected one NAME_{split}_fold_{fold}.jsonl, found {len(found)}"
            + (f" ({', '.join(p.name for p in found)})" if found else "")
        )
    return found[0]


def _label_map(folds: Path) -> dict[str, str]:
    path = folds / "label_map.json"
    if not path.is_file():
        raise DatasetError(f"{path}: not found; an EmoBox fold set maps its emotion codes to classes there")
    try:
        codes = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(codes, dict) or not codes or not all(isinstance(v, str) and v for v in codes.values()):
        raise DatasetError(f"{path}: must map each emotion code to a class name")
    return {str(k): v for k, v in codes.items()}


def _rows(path: Path):
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: is not UTF-8 text ({err.reason} at byte {err.start})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise DatasetError(f"{path}:{number}: not a JSON object ({err})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{number}: not a JSON object")
        yield f"{path}:{number}", row


def load_emobox(
    root,
    *,
    folds=None,
    fold: int = 1,
    classes=None,
    seed: int = 0,
    on_error: str = "raise",
    verify: bool = True,
) -> list[Record]:
    """Records of fold `fold` of the EmoBox fold set in `folds`, audio under `root`."""
    root = require_dir(root, "EmoBox data root")
    if folds is None:
        raise DatasetError(f"{root}: an EmoBox dataset needs its fold files (--folds DIR, with label_map.json)")
    folds = require_dir(folds, "EmoBox folds")
    codes = _label_map(folds)
    folder = require_dir(folds / f"fold_{fold}", f"fold {fold}'s")
    keep = set(classes) if classes is not None else None
    scan = Scan(f"EmoBox fold {fold} in {folds}", on_error)
    for split in ("train", "test"):
        for where, row in _rows(_fold_file(folder, split, fold)):
            wav, emo = row.get("wav"), row.get("emo")
            if not isinstance(wav, str) or not wav or not isinstance(emo, str):
                scan.bad(where, "needs a 'wav' path and an 'emo' code")
                continue
            label = map_label(scan, Path(where), emo, codes, keep)
            if label is None:
                continue
            path = Path(wav) if Path(wav).is_absolute() else root / wav
            scan.add(path, label, str(row.get("speaker") or "unknown"), split, verify)
    records = scan.done()
    train = [i for i, r in enumerate(records) if r.split == "train"]
    n_val = max(1, round(VAL_SHARE * len(train))) if len(train) > 1 else 0
    val = {train[i] for i in np.random.default_rng(seed).permutation(len(train))[:n_val]}
    return [Record(r.path, r.label, r.speaker, "val") if i in val else r for i, r in enumerate(records)]
