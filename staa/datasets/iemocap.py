"""IEMOCAP (USC SAIL): 5 sessions of dyadic speech, 2 speakers each (one F, one M).

Layout: ROOT/Session{1..5}/sentences/wav/<dialog>/<utterance>.wav, labels in
ROOT/Session{n}/dialog/EmoEvaluation/<dialog>.txt as lines
"[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]".
The usual 4-class set merges excitement into happiness. Folds are by session: the test session's
female speaker is validation and its male speaker test (leave-one-session-out, no speaker overlap).
"""

from __future__ import annotations

import re

from staa.datasets.records import Record, Scan, map_label, require_dir

CODES = {
    "neu": "neutral",
    "ang": "angry",
    "hap": "happy",
    "exc": "happy",
    "sad": "sad",
    "fru": "frustrated",
    "sur": "surprised",
    "fea": "fearful",
    "dis": "disgusted",
    "oth": "other",
    "xxx": "none",
}
FOUR_CLASS = {"neutral", "angry", "happy", "sad"}
_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\t(Ses0(\d)[FM]_\S+_([FM])\d+)\t(\w+)\t")


def load_iemocap(
    root, *, classes=FOUR_CLASS, test_session: int = 5, on_error: str = "raise", verify: bool = True
) -> list[Record]:
    root = require_dir(root, "IEMOCAP root")
    if test_session not in range(1, 6):
        raise ValueError(f"test_session must be 1-5, got {test_session}")
    scan = Scan(f"IEMOCAP at {root}", on_error)
    keep = set(classes) if classes is not None else None
    sessions = {}  # check every folder first: fail before a long scan, not after it
    for session in range(1, 6):
        sdir = require_dir(root / f"Session{session}", f"IEMOCAP Session{session}")
        sessions[session] = (
            require_dir(sdir / "dialog" / "EmoEvaluation", "IEMOCAP EmoEvaluation"),
            require_dir(sdir / "sentences" / "wav", "IEMOCAP sentences/wav"),
        )
    for session, (label_dir, wav_dir) in sessions.items():
        for txt in sorted(label_dir.glob("*.txt")):
            for line in txt.read_text(errors="replace").splitlines():
                m = _LINE.match(line)
                if not m:
                    continue
                utt, _, gender, code = m.groups()
                wav = wav_dir / utt.rsplit("_", 1)[0] / f"{utt}.wav"
                label = map_label(scan, txt, code, CODES, keep)
                if label is None:
                    continue
                if not wav.is_file():
                    scan.bad(wav, f"listed in {txt.name} but missing")
                    continue
                split = "train" if session != test_session else ("val" if gender == "F" else "test")
                scan.add(wav, label, f"Ses{session:02d}{gender}", split, verify)
    return scan.done()
