import logging

import numpy as np
import pytest

from staa.datasets import AudioDataset, DatasetError, load_records
from tests.conftest import tone, write_wav


def _tree_snapshot(root):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _by_name(records):
    return {r.path.rsplit("/", 1)[-1]: r for r in records}


def make_iemocap(root):
    dialogs = {
        1: ["Ses01F_impro01", "Ses01M_script01_1"],
        2: ["Ses02F_impro02"],
        3: ["Ses03M_impro03"],
        4: ["Ses04F_impro04"],
        5: ["Ses05M_impro05"],
    }
    codes = ["neu", "exc", "ang", "sad", "fru", "hap"]
    for s, names in dialogs.items():
        sess = root / f"Session{s}"
        (sess / "dialog" / "EmoEvaluation").mkdir(parents=True)
        for d in names:
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            for i, code in enumerate(codes):
                utt = f"{d}_{'FM'[i % 2]}{i:03d}"
                write_wav(sess / "sentences" / "wav" / d / f"{utt}.wav", tone(seed=i))
                lines += [
                    f"[{i}.0000 - {i + 1}.5000]\t{utt}\t{code}\t[2.5000, 3.0000, 3.0000]",
                    "C-E1:\tNeutral;\t()",
                    "",
                ]
            (sess / "dialog" / "EmoEvaluation" / f"{d}.txt").write_text("\n".join(lines))
    return root


def test_iemocap_four_classes_and_session_folds(tmp_path):
    root = make_iemocap(tmp_path / "IEMOCAP_full_release")
    before = _tree_snapshot(root)
    recs = load_records("iemocap", root, test_session=5)
    names = _by_name(recs)
    assert names["Ses01F_impro01_M001.wav"].label == "happy"  # exc merged into happy
    assert names["Ses01F_impro01_M005.wav"].label == "happy"
    assert names["Ses01F_impro01_F002.wav"].label == "angry"
    assert "Ses01F_impro01_F004.wav" not in names  # frustration is outside the 4 classes
    assert {r.label for r in recs} == {"neutral", "happy", "angry", "sad"}
    assert names["Ses01F_impro01_M001.wav"].speaker == "Ses01M"
    assert {r.split for r in recs if r.speaker.startswith("Ses05")} == {"val", "test"}
    assert {r.speaker for r in recs if r.split == "test"} == {"Ses05M"}
    assert {r.split for r in recs if not r.speaker.startswith("Ses05")} == {"train"}
    assert _tree_snapshot(root) == before  # the data folder is never written to


def test_iemocap_missing_session_and_unknown_code(tmp_path):
    root = make_iemocap(tmp_path / "iemo")
    txt = root / "Session2" / "dialog" / "EmoEvaluation" / "Ses02F_impro02.txt"
    txt.write_text(txt.read_text().replace("\tneu\t", "\tzzz\t"))
    with pytest.raises(DatasetError, match="Ses02F_impro02.txt: unknown emotion code 'zzz'"):
        load_records("iemocap", root)
    recs = load_records("iemocap", root, on_error="skip")
    assert len(recs) == 6 * 5 - 1  # 6 dialogs x 5 kept labels (frustration dropped), less the bad one
    (root / "Session3" / "dialog" / "EmoEvaluation" / "Ses03M_impro03.txt").unlink()
    import shutil

    shutil.rmtree(root / "Session4")
    with pytest.raises(DatasetError, match="Session4: IEMOCAP Session4 folder not found"):
        load_records("iemocap", root)


def make_emodb(root):
    for spk in ("03", "08", "09", "10", "11"):
        for text, emo in (("a01", "F"), ("a02", "W"), ("b01", "N"), ("b03", "T"), ("a04", "L")):
            write_wav(root / "wav" / f"{spk}{text}{emo}a.wav")
    return root


def test_emodb(tmp_path):
    recs = load_records("emodb", make_emodb(tmp_path / "emodb"))
    names = _by_name(recs)
    assert names["03a01Fa.wav"].label == "happy" and names["03a01Fa.wav"].speaker == "03"
    assert names["08a02Wa.wav"].label == "angry" and names["10b03Ta.wav"].label == "sad"
    assert names["11a04La.wav"].label == "bored" and names["09b01Na.wav"].label == "neutral"
    _assert_speaker_independent(recs)
    four = load_records("emodb", tmp_path / "emodb", classes=["neutral", "angry", "happy", "sad"])
    assert {r.label for r in four} == {"neutral", "angry", "happy", "sad"} and len(four) == 20


def _assert_speaker_independent(recs):
    split_of = {}
    for r in recs:
        assert split_of.setdefault(r.speaker, r.split) == r.split
    assert {"train", "val", "test"} == set(split_of.values())


def make_ravdess(root):
    for actor in (1, 2, 3, 4, 5):
        for emo in ("01", "03", "04", "05", "08"):
            write_wav(root / f"Actor_{actor:02d}" / f"03-01-{emo}-01-01-01-{actor:02d}.wav")
        write_wav(root / f"Actor_{actor:02d}" / f"03-02-03-01-01-01-{actor:02d}.wav")  # song: ignored
    return root


def test_ravdess(tmp_path):
    recs = load_records("ravdess", make_ravdess(tmp_path / "ravdess"))
    names = _by_name(recs)
    assert len(recs) == 25
    assert names["03-01-05-01-01-01-02.wav"].label == "angry"
    assert names["03-01-08-01-01-01-04.wav"].label == "surprised"
    assert names["03-01-04-01-01-01-05.wav"].speaker == "05"
    _assert_speaker_independent(recs)
    write_wav(tmp_path / "ravdess" / "Actor_01" / "03-01-09-01-01-01-01.wav")
    with pytest.raises(DatasetError, match="03-01-09-01-01-01-01.wav: unknown emotion code '09'"):
        load_records("ravdess", tmp_path / "ravdess")


def make_cremad(root):
    for actor in (1001, 1002, 1003, 1004, 1005):
        for sent, emo, lvl in (
            ("DFA", "ANG", "XX"),
            ("IEO", "HAP", "LO"),
            ("TIE", "NEU", "XX"),
            ("IOM", "SAD", "HI"),
            ("ITS", "FEA", "MD"),
        ):
            write_wav(root / "AudioWAV" / f"{actor}_{sent}_{emo}_{lvl}.wav")
    return root


def test_cremad(tmp_path):
    recs = load_records("cremad", make_cremad(tmp_path / "crema"))
    names = _by_name(recs)
    assert names["1001_DFA_ANG_XX.wav"].label == "angry" and names["1003_ITS_FEA_MD.wav"].label == "fearful"
    assert names["1005_IOM_SAD_HI.wav"].speaker == "1005"
    _assert_speaker_independent(recs)


def make_demos(root):
    for spk, g in (("01", "f"), ("02", "m"), ("03", "m"), ("04", "f"), ("05", "m")):
        for i, emo in enumerate(("rab", "tri", "gio", "pau")):
            write_wav(root / "DEMOS" / f"{'PR' if i % 2 == 0 else 'NP'}_{g}_{spk}_{emo}{i:03d}b.wav")
        write_wav(root / "NEU" / f"{g}_{spk}_neu001.wav")
    return root


def test_demos(tmp_path):
    recs = load_records("demos", make_demos(tmp_path / "demos"))
    names = _by_name(recs)
    assert names["PR_f_01_rab000b.wav"].label == "angry" and names["NP_m_02_tri001b.wav"].label == "sad"
    assert names["PR_m_03_gio002b.wav"].label == "happy" and names["m_05_neu001.wav"].label == "neutral"
    assert names["NP_f_04_pau003b.wav"].speaker == "04"
    _assert_speaker_independent(recs)
    proto = load_records("demos", tmp_path / "demos", prototypical_only=True)
    assert not any(r.path.rsplit("/", 1)[-1].startswith("NP_") for r in proto)


def test_manifest_relative_paths_and_errors(tmp_path):
    write_wav(tmp_path / "clips" / "a.wav")
    write_wav(tmp_path / "clips" / "b.wav")
    (tmp_path / "m.csv").write_text("path,label,split\nclips/a.wav,happy,train\nclips/b.wav,sad,test\n")
    recs = load_records("manifest", tmp_path / "m.csv")
    assert [(r.label, r.split) for r in recs] == [("happy", "train"), ("sad", "test")]
    assert recs[0].path == str(tmp_path / "clips" / "a.wav")
    (tmp_path / "bad.csv").write_text("file,label\nclips/a.wav,happy\n")
    with pytest.raises(DatasetError, match="bad.csv: manifest lacks column.*path"):
        load_records("manifest", tmp_path / "bad.csv")
    (tmp_path / "split.csv").write_text("path,label,split\nclips/a.wav,happy,holdout\n")
    with pytest.raises(DatasetError, match="split.csv:2: split 'holdout'"):
        load_records("manifest", tmp_path / "split.csv")


def test_unreadable_files_raise_or_are_skipped_and_counted(tmp_path, caplog):
    root = make_emodb(tmp_path / "emodb")
    (root / "wav" / "03a05Fb.wav").write_bytes(b"garbage" * 30)
    good = (root / "wav" / "08a01Fa.wav").read_bytes()
    (root / "wav" / "09a05Wb.wav").write_bytes(good[: len(good) // 3])
    with pytest.raises(DatasetError, match="03a05Fb.wav: is not readable audio"):
        load_records("emodb", root)
    with caplog.at_level(logging.WARNING):
        recs = load_records("emodb", root, on_error="skip")
    assert len(recs) == 25
    assert "skipped 2 bad file(s), kept 25" in caplog.text and "09a05Wb.wav" in caplog.text


def test_missing_folders_and_unknown_dataset(tmp_path):
    for kind in ("emodb", "ravdess", "cremad", "demos", "iemocap"):
        with pytest.raises(DatasetError, match="folder not found|no RAVDESS"):
            load_records(kind, tmp_path / "nowhere" if kind != "ravdess" else tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset 'timit'"):
        load_records("timit", tmp_path)


def test_audio_dataset_fixed_length_and_labels(tmp_path):
    root = make_emodb(tmp_path / "emodb")
    write_wav(root / "wav" / "03a07Fa.wav", tone(seconds=2.5, rate=44_100), 44_100)
    recs = [r for r in load_records("emodb", root) if r.label in ("happy", "angry")]
    ds = AudioDataset(recs, ["angry", "happy"], clip_seconds=2.0, crop="random", seed=1)
    long = next(i for i, r in enumerate(recs) if r.path.endswith("03a07Fa.wav"))
    x, y = ds[long]
    assert x.shape == (32_000,) and y == 1  # resampled to 16 kHz, cropped to 2 s
    assert np.array_equal(ds[long][0], x)  # same epoch, same crop
    ds.set_epoch(1)
    assert not np.array_equal(ds[long][0], x)
    assert ds[0][0].shape == (32_000,)  # 1 s clips are zero-padded
    with pytest.raises(DatasetError, match="not among the classes"):
        AudioDataset(recs, ["angry"])
