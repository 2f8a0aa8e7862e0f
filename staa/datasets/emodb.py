"""Berlin EmoDB: 10 actors, 10 German sentences, 7 emotions.

Layout: ROOT/wav/<ss><text><e><v>.wav, e.g. 03a01Fa.wav: speaker 03, text a01, emotion F
(Freude), version a. Emotion letters are German initials.
"""

from __future__ import annotations

import re

from staa.datasets.records import Record, Scan, map_label, require_dir, with_speaker_splits

CODES = {"W": "angry", "L": "bored", "E": "disgusted", "A": "fearful", "F": "happy", "T": "sad", "N": "neutral"}
_NAME = re.compile(r"^(\d\d)([ab]\d\d)([A-Z])([a-z])$")


def load_emodb(root, *, classes=None, seed: int = 0, on_error: str = "raise", verify: bool = True) -> list[Record]:
    wav_dir = require_dir(require_dir(root, "EmoDB root") / "wav", "EmoDB wav")
    scan = Scan(f"EmoDB at {root}", on_error)
    keep = set(classes) if classes is not None else None
    for wav in sorted(wav_dir.glob("*.wav")):
        m = _NAME.match(wav.stem)
        if not m:
            scan.bad(wav, "file name does not follow EmoDB's <speaker><text><emotion><version>.wav")
            continue
        label = map_label(scan, wav, m.group(3), CODES, keep)
        if label is not None:
            scan.add(wav, label, m.group(1), verify=verify)
    return with_speaker_splits(scan.done(), seed)
