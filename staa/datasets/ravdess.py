"""RAVDESS: 24 actors (odd male, even female), two statements, 8 emotions.

Layout: ROOT/Actor_NN/MM-VV-EE-II-SS-RR-AA.wav (modality, vocal channel, emotion, intensity,
statement, repetition, actor). Only audio-only speech (03-01) is used; song and video files are ignored.
"""

from __future__ import annotations

import re

from staa.datasets.records import DatasetError, Record, Scan, map_label, require_dir, with_speaker_splits

CODES = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgusted",
    "08": "surprised",
}
_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def load_ravdess(root, *, classes=None, seed: int = 0, on_error: str = "raise", verify: bool = True) -> list[Record]:
    root = require_dir(root, "RAVDESS root")
    actors = sorted(p for p in root.glob("Actor_*") if p.is_dir())
    if not actors:
        raise DatasetError(f"{root}: no RAVDESS Actor_NN folders found")
    scan = Scan(f"RAVDESS at {root}", on_error)
    keep = set(classes) if classes is not None else None
    for actor in actors:
        for wav in sorted(actor.glob("*.wav")):
            m = _NAME.match(wav.stem)
            if not m:
                scan.bad(wav, "file name does not follow RAVDESS's MM-VV-EE-II-SS-RR-AA.wav")
                continue
            modality, channel, emotion, _, _, _, speaker = m.groups()
            if (modality, channel) != ("03", "01"):
                continue
            if speaker != actor.name.split("_")[-1]:
                scan.bad(wav, f"actor {speaker} in the name but the file is under {actor.name}")
                continue
            label = map_label(scan, wav, emotion, CODES, keep)
            if label is not None:
                scan.add(wav, label, speaker, verify=verify)
    return with_speaker_splits(scan.done(), seed)
