"""CREMA-D: 91 actors (1001-1091), 12 sentences, 6 emotions at up to 4 intensities.

Layout: ROOT/AudioWAV/<actor>_<sentence>_<emotion>_<intensity>.wav, e.g. 1001_DFA_ANG_XX.wav.
"""

from __future__ import annotations

import re

from staa.datasets.records import Record, Scan, map_label, require_dir, with_speaker_splits

CODES = {"ANG": "angry", "DIS": "disgusted", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
SENTENCES = {"IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI"}
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_(LO|MD|HI|XX|X)$")


def load_cremad(root, *, classes=None, seed: int = 0, on_error: str = "raise", verify: bool = True) -> list[Record]:
    wav_dir = require_dir(require_dir(root, "CREMA-D root") / "AudioWAV", "CREMA-D AudioWAV")
    scan = Scan(f"CREMA-D at {root}", on_error)
    keep = set(classes) if classes is not None else None
    for wav in sorted(wav_dir.glob("*.wav")):
        m = _NAME.match(wav.stem)
        if not m or m.group(2) not in SENTENCES:
            scan.bad(wav, "file name does not follow CREMA-D's <actor>_<sentence>_<emotion>_<intensity>.wav")
            continue
        label = map_label(scan, wav, m.group(3), CODES, keep)
        if label is not None:
            scan.add(wav, label, m.group(1), verify=verify)
    return with_speaker_splits(scan.done(), seed)
