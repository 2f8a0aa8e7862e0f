import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from staa.datasets.synthetic.corpus import EMOTIONS, SENTENCES, CorpusConfig, build_corpus, loudness_normalise


def _rows(manifest):
    with open(manifest, newline="") as fh:
        return list(csv.DictReader(fh))


def _hashes(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.wav"))
    }


def test_same_seed_gives_byte_identical_files(tmp_path):
    cfg = CorpusConfig(n_clips=24, seed=3)
    a = build_corpus(tmp_path / "a", cfg, workers=2, progress=False).parent
    b = build_corpus(tmp_path / "b", cfg, workers=1, progress=False).parent
    ha, hb = _hashes(a), _hashes(b)
    assert len(ha) == 24 and ha == hb
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()
    other = build_corpus(tmp_path / "c", CorpusConfig(n_clips=24, seed=4), progress=False).parent
    assert _hashes(other) != ha


def test_cached_and_guarded(tmp_path):
    cfg = CorpusConfig(n_clips=12)
    manifest = build_corpus(tmp_path, cfg, progress=False)
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.wav")}
    assert build_corpus(tmp_path, cfg, progress=False) == manifest
    assert stamp == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.wav")}
    with pytest.raises(FileExistsError, match="other settings"):
        build_corpus(tmp_path, CorpusConfig(n_clips=16), progress=False)


def test_interrupted_build_resumes_missing_clips(tmp_path):
    cfg = CorpusConfig(n_clips=12)
    manifest = build_corpus(tmp_path / "full", cfg, progress=False)
    reference = _hashes(manifest.parent)
    partial = tmp_path / "partial"
    build_corpus(partial, cfg, progress=False)
    victim = sorted(partial.rglob("*.wav"))[5]
    victim.unlink()
    (partial / "manifest.csv").unlink()  # as if killed before the manifest was written
    build_corpus(partial, cfg, progress=False)
    assert _hashes(partial) == reference


def test_splits_hold_out_voices_and_sentences(corpus):
    manifest, cfg = corpus
    rows = _rows(manifest)
    assert len(rows) == cfg.n_clips
    by_split = {s: [r for r in rows if r["split"] == s] for s in ("train", "val", "test")}
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert not {r["speaker"] for r in by_split[a]} & {r["speaker"] for r in by_split[b]}
        assert not {r["sentence_id"] for r in by_split[a]} & {r["sentence_id"] for r in by_split[b]}
    for split, items in by_split.items():
        counts = [sum(r["label"] == e for r in items) for e in EMOTIONS]
        assert max(counts) - min(counts) <= 1, (split, counts)
    assert len({r["sentence_id"] for r in rows}) >= 30 > 0 and len(SENTENCES) >= 30
    assert len({r["voice"].split("+")[0] for r in rows}) >= 4  # several accents


def _level_and_duration(path):
    x, rate = sf.read(path, dtype="float32")
    frame = rate // 50
    energy = (x[: len(x) // frame * frame].reshape(-1, frame) ** 2).mean(axis=1)
    active = energy > energy.max() * 1e-4
    return [10 * np.log10(np.mean(x**2) + 1e-12), 10 * np.log10(energy[active].mean()), active.sum() * frame / rate]


def test_loudness_and_duration_are_no_shortcut(corpus):
    """A logistic regression on clip level and speech duration alone stays near chance (<= 40% UA)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    manifest, cfg = corpus
    rows = _rows(manifest)
    feats = {r["path"]: _level_and_duration(manifest.parent / r["path"]) for r in rows}
    train = [r for r in rows if r["split"] != "test"]
    test = [r for r in rows if r["split"] == "test"]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    clf.fit([feats[r["path"]] for r in train], [r["label"] for r in train])
    ua = balanced_accuracy_score([r["label"] for r in test], clf.predict([feats[r["path"]] for r in test]))
    assert ua <= 0.40, f"loudness/duration shortcut: UA {ua:.2f}"
    active_levels = np.array([feats[r["path"]][1] for r in rows])
    assert abs(np.median(active_levels) - cfg.target_dbfs) < 3.0
    assert active_levels.std() < 3.0


def test_loudness_normalise_hits_target():
    x = np.concatenate([np.zeros(8000), 0.01 * np.sin(np.arange(16000) * 0.1)])
    y = loudness_normalise(x, -20.0, 16_000)
    active = y[8000:]
    assert abs(20 * np.log10(np.sqrt(np.mean(active**2))) + 20.0) < 0.5


def test_config_is_validated():
    with pytest.raises(ValueError, match="n_clips"):
        CorpusConfig(n_clips=3)
    with pytest.raises(ValueError, match="split_shares"):
        CorpusConfig(split_shares=(0.5, 0.5, 0.5))


def _children(pid):
    kids = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (name)": state, ppid, ...
        if proc.name.isdigit() and int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(proc.name))
    return kids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_kill_9_of_the_parent_leaves_no_orphaned_synthesis_workers(tmp_path):
    import subprocess
    import sys
    import time

    code = f"from staa.datasets.synthetic.corpus import CorpusConfig, build_corpus; build_corpus({str(tmp_path / 'c')!r}, CorpusConfig(n_clips=400), progress=False)"
    parent = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while len(workers := _children(parent.pid)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert len(workers) >= 2, "the pool's workers never started"
    parent.kill()
    parent.wait()
    deadline = time.time() + 10
    while (alive := [w for w in workers if _state(w) not in (None, "Z")]) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive, f"workers {alive} outlived their killed parent"


def _state(pid):
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
