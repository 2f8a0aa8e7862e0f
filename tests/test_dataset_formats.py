"""Datasets as the SER community publishes them: EmoBox folds, `save_to_disk` folders and audiofolder layouts."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from staa.datasets import DatasetError, load_records

CODES = {"neu": "neutral", "ang": "angry", "hap": "happy", "exc": "happy"}


def _clips(root, n=20):
    """n short tones under ROOT/downloads/ (label codes cycling), as (relative path, code, split)."""
    out = []
    for i in range(n):
        rel = f"downloads/corpus/s{i % 4}/u{i:02d}.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        tone = 0.1 * np.sin(np.arange(4000) * 0.02 * (i + 1)) + 0.001 * np.random.default_rng(i).normal(size=4000)
        sf.write(str(root / rel), tone.astype("float32"), 16_000)
        out.append((rel, list(CODES)[i % 4], "test" if i % 5 == 0 else "train"))
    return out


def _emobox(tmp_path, clips):
    folds = tmp_path / "EmoBox" / "data" / "corpus"
    (folds / "fold_1").mkdir(parents=True)
    (folds / "label_map.json").write_text(json.dumps(CODES))
    for split in ("train", "test"):
        rows = [
            {"key": f"corpus-{rel}", "dataset": "corpus", "wav": rel, "emo": code, "sample_rate": 16000, "channel": 1}
            for rel, code, s in clips
            if s == split
        ]
        (folds / "fold_1" / f"corpus_{split}_fold_1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folds


def _manifest(tmp_path, root, clips, splits):
    lines = ["path,label,speaker,split"] + [
        f"{root / rel},{CODES[code]},unknown,{split}" for (rel, code, _), split in zip(clips, splits)
    ]
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    return load_records("manifest", tmp_path / "manifest.csv")


def test_an_emobox_fold_gives_the_records_of_the_equivalent_manifest(tmp_path):
    root = tmp_path / "data"
    clips = _clips(root)
    folds = _emobox(tmp_path, clips)
    records = load_records("emobox", root, folds=folds, fold=1)
    by_path = {r.path: r for r in records}
    # EmoBox fixes train and test; val is a seeded tenth of train
    assert [by_path[str(root / rel)].split == "test" for rel, _, s in clips] == [s == "test" for _, _, s in clips]
    assert sum(r.split == "val" for r in records) == round(0.1 * sum(s == "train" for _, _, s in clips))
    manifest = _manifest(tmp_path, root, clips, [by_path[str(root / rel)].split for rel, _, _ in clips])
    assert sorted(records, key=lambda r: r.path) == sorted(manifest, key=lambda r: r.path)
    assert load_records("emobox", root, folds=folds, fold=1) == records  # seeded
    other = load_records("emobox", root, folds=folds, fold=1, seed=1)
    assert {r.path for r in other if r.split == "val"} != {r.path for r in records if r.split == "val"}
    assert {r.label for r in load_records("emobox", root, folds=folds, classes=["happy"])} == {"happy"}


def test_bad_emobox_folds_are_named(tmp_path):
    root = tmp_path / "data"
    clips = _clips(root, 6)
    folds = _emobox(tmp_path, clips)
    with pytest.raises(DatasetError, match="--folds DIR"):
        load_records("emobox", root)
    with pytest.raises(DatasetError, match="fold 2's folder not found"):
        load_records("emobox", root, folds=folds, fold=2)
    train = folds / "fold_1" / "corpus_train_fold_1.jsonl"
    train.write_text(train.read_text() + json.dumps({"wav": clips[0][0], "emo": "fru"}) + "\n")
    with pytest.raises(DatasetError, match=r"corpus_train_fold_1.jsonl:\d+: unknown emotion code 'fru'"):
        load_records("emobox", root, folds=folds)
    assert len(load_records("emobox", root, folds=folds, on_error="skip")) == 6
    (folds / "label_map.json").unlink()
    with pytest.raises(DatasetError, match="label_map.json: not found"):
        load_records("emobox", root, folds=folds)


def test_an_audiofolder_layout_gives_the_records_of_the_equivalent_manifest(tmp_path):
    root = tmp_path / "af"
    expected = []
    for i in range(12):
        split, label = ["train", "validation", "test"][i % 3], ["angry", "sad"][i % 2]
        path = root / split / label / f"{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), (0.1 * np.sin(np.arange(4000) * 0.03 * (i + 1))).astype("float32"), 16_000)
        expected.append(f"{path},{label},unknown,{'val' if split == 'validation' else split}")
    (tmp_path / "m.csv").write_text("path,label,speaker,split\n" + "\n".join(expected) + "\n")
    key = lambda r: r.path
    got = load_records("hf", root)
    assert sorted(got, key=key) == sorted(load_records("manifest", tmp_path / "m.csv"), key=key)


def test_a_save_to_disk_folder_gives_the_records_and_audio_of_the_equivalent_manifest(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    pa = pytest.importorskip("pyarrow")
    monkeypatch.setenv("STAA_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    clips = _clips(root, 12)
    names = ["angry", "happy", "neutral"]
    features = datasets.Features(
        {"audio": datasets.Audio(sampling_rate=16_000), "label": datasets.ClassLabel(names=names),
         "speaker_id": datasets.Value("string")}
    )  # fmt: skip
    parts, splits = {}, ["train", "validation", "test"]
    for k, split in enumerate(splits):
        mine = [c for i, c in enumerate(clips) if i % 3 == k]
        audio = [{"bytes": None, "path": str(root / rel)} for rel, _, _ in mine]
        table = pa.table(
            {
                "audio": pa.array(audio, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                "label": pa.array([names.index(CODES[code]) for _, code, _ in mine], pa.int64()),
                "speaker_id": [rel.split("/")[2] for rel, _, _ in mine],
            }
        )
        parts[split] = datasets.Dataset(table, info=datasets.DatasetInfo(features=features))
    saved = tmp_path / "saved"
    datasets.DatasetDict(parts).save_to_disk(str(saved))  # embeds the audio as bytes
    before = {p: os.stat(p).st_mtime_ns for p in saved.rglob("*")}
    got = load_records("hf", saved)
    assert {p: os.stat(p).st_mtime_ns for p in saved.rglob("*")} == before  # the dataset is only read
    assert all(str(tmp_path / "cache") in r.path for r in got)
    lines = ["path,label,speaker,split"] + [
        f"{root / rel},{CODES[code]},{rel.split('/')[2]},{['train', 'val', 'test'][i % 3]}"
        for i, (rel, code, _) in enumerate(clips)
    ]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    manifest = load_records("manifest", tmp_path / "m.csv")
    assert len(got) == len(manifest) == 12
    order = lambda rs: sorted(rs, key=lambda r: (r.split, r.speaker, r.label, sf.read(r.path)[0][:50].tobytes()))
    for mine, theirs in zip(order(got), order(manifest)):
        assert (mine.label, mine.speaker, mine.split) == (theirs.label, theirs.speaker, theirs.split)
        assert np.array_equal(sf.read(mine.path)[0], sf.read(theirs.path)[0])
    assert load_records("hf", saved) == got  # the cached files are written once and found again


def test_the_commands_and_the_grid_read_the_emobox_fold_they_are_given(tmp_path):
    from argparse import Namespace

    from eval.config import EvalConfig
    from eval.harness import load_grid_records
    from staa.cli.commands import _records

    root = tmp_path / "data"
    clips = _clips(root, 10)
    folds = _emobox(tmp_path, clips)
    expected = load_records("emobox", root, folds=folds, fold=1)
    args = Namespace(dataset="emobox", data=root, folds=folds, fold=1, classes=None, skip_bad=False)
    assert _records(args) == expected
    cfg = EvalConfig(data=str(root), victims={"v": "v.pt"}, attacks={"pgd": "pgd"}, dataset="emobox", folds=str(folds))
    assert load_grid_records(cfg) == expected
    with pytest.raises(DatasetError, match="fold 3's folder not found"):
        _records(Namespace(**{**vars(args), "fold": 3}))
    # the other layouts carry their split in their files: a fold option given with them changes nothing
    manifest = _manifest(tmp_path, root, clips, ["train"] * len(clips))
    assert load_records("manifest", tmp_path / "manifest.csv", folds=folds, fold=3) == manifest
