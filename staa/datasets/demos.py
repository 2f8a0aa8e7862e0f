"""DEMoS: Italian elicited emotional speech, 68 speakers, 7 emotions plus neutral.

Layout: ROOT/DEMOS/{PR,NP}_<g>_<NN>_<emo><NNN>.wav (PR prototypical, NP non-prototypical; g is
f or m; NN the speaker; emo the Italian code: rab anger, tri sadness, gio happiness, pau fear,
dis disgust, col guilt, sor surprise) and ROOT/NEU/ holding the neutral recordings with code neu.
"""

from __future__ import annotations

import re

from staa.datasets.records import Record, Scan, map_label, require_dir, with_speaker_splits

CODES = {
    "rab": "angry",
    "tri": "sad",
    "gio": "happy",
    "pau": "fearful",
    "dis": "disgusted",
    "col": "guilty",
    "sor": "surprised",
    "neu": "neutral",
}
_NAME = re.compile(r"^(?:(PR|NP)_)?([fm])_(\d\d)_([a-z]{3})\d+[a-z]?$")


def load_demos(
    root, *, classes=None, prototypical_only: bool = False, seed: int = 0, on_error: str = "raise", verify: bool = True
) -> list[Record]:
    root = require_dir(root, "DEMoS root")
    folders = [require_dir(root / "DEMOS", "DEMoS DEMOS")]
    if (root / "NEU").is_dir():
        folders.append(root / "NEU")
    scan = Scan(f"DEMoS at {root}", on_error)
    keep = set(classes) if classes is not None else None
    for folder in folders:
        for wav in sorted(folder.glob("*.wav")):
            m = _NAME.match(wav.stem)
            if not m:
                scan.bad(wav, "file name does not follow DEMoS's {PR,NP}_<gender>_<speaker>_<emotion><number>.wav")
                continue
            kind, _, speaker, code = m.groups()
            if prototypical_only and kind == "NP":
                continue
            label = map_label(scan, wav, code, CODES, keep)
            if label is not None:
                scan.add(wav, label, speaker, verify=verify)
    return with_speaker_splits(scan.done(), seed)
