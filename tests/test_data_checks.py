"""Loud data checks: a manifest reads as a spreadsheet saves it, and nothing in it is dropped, doubled or guessed in
silence (unknown labels, rows without a split, a clip listed twice)."""

import pytest

from staa.datasets.manifest import load_manifest
from staa.datasets.records import DatasetError
from tests.conftest import tone, write_wav
from tests.test_bad_input import one_error, run_cli
from tests.test_run_folders import victim_file

EMOTIONS = ["angry", "happy", "neutral", "sad"]


def _manifest(folder, rows, *, name="m.csv", bom=False, crlf=False):
    for row in rows:
        if not (folder / row[0]).exists():
            write_wav(folder / row[0], tone(seed=sum(map(ord, row[0]))))
    text = ("\r\n" if crlf else "\n").join(["path,label,split", *(",".join(r) for r in rows)]) + "\n"
    (folder / name).write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return folder / name


def test_a_spreadsheets_csv_utf8_with_bom_and_crlf_reads_like_a_plain_one(tmp_path):
    rows = [(f"{i}.wav", EMOTIONS[i % 4], "test") for i in range(4)]
    plain = load_manifest(_manifest(tmp_path, rows))
    excel = load_manifest(_manifest(tmp_path, rows, name="x.csv", bom=True, crlf=True))
    assert excel == plain and [r.label for r in excel] == EMOTIONS


def test_a_clip_listed_twice_is_an_error_naming_both_lines(tmp_path):
    rows = [("a.wav", "angry", "test"), ("b.wav", "sad", "test"), ("./a.wav", "happy", "test")]
    with pytest.raises(DatasetError, match=r"m.csv:4: ./a.wav is listed again \(first on line 2\)"):
        load_manifest(_manifest(tmp_path, rows))


def test_a_row_without_a_split_is_refused_or_skipped_and_counted(tmp_path, caplog):
    rows = [("a.wav", "angry", "test"), ("b.wav", "sad", ""), ("c.wav", "sad", "test")]
    with pytest.raises(DatasetError, match=r"m.csv:3: empty split"):
        load_manifest(_manifest(tmp_path, rows))
    kept = load_manifest(tmp_path / "m.csv", on_error="skip")
    assert [r.label for r in kept] == ["angry", "sad"] and "skipped 1 bad file" in caplog.text


def test_labels_the_victim_does_not_know_are_named_not_dropped(tmp_path, capsys, caplog):
    rows = [(f"{i}.wav", EMOTIONS[i % 4], "test") for i in range(6)]
    rows += [("z1.wav", "zzz", "test"), ("z2.wav", "zzz", "test"), ("A.wav", "Angry", "test")]
    (tmp_path / "data").mkdir()
    manifest = _manifest(tmp_path / "data", rows)
    v = victim_file(tmp_path / "v.pt")
    base = ["attack", "--data", manifest, "--victim", v, "--attack", "fgsm", "--clip-seconds", "1", "--quiet"]
    err = one_error(capsys, *base, "--out", tmp_path / "o")
    assert "3 clip(s) have labels the model does not know: 'zzz' (2), 'Angry' (1), did you mean 'angry'?" in err
    assert not (tmp_path / "o" / "clips.csv").exists()
    code, err = run_cli(capsys, *base, "--skip-bad", "--out", tmp_path / "o2")
    assert code == 0 and "left out (--skip-bad)" in caplog.text
    assert (tmp_path / "o2" / "clips.csv").read_text().count(".wav") == 6
    evaluate = ["evaluate", "--data", manifest, "--victim", f"v={v}", "--attack", "f=fgsm", "--no-perceptual"]
    err = one_error(capsys, *evaluate, "--no-report", "--out", tmp_path / "e", "--quiet")
    assert "'zzz' (2)" in err


def test_a_run_refused_for_its_data_after_the_claim_leaves_the_folder_for_the_fixed_rerun(tmp_path, capsys):
    rows = [(f"{i}.wav", EMOTIONS[i % 4], "test") for i in range(4)] + [("z.wav", "zzz", "test")]
    (tmp_path / "data").mkdir()
    manifest = _manifest(tmp_path / "data", rows)
    v = victim_file(tmp_path / "v.pt")
    evaluate = ["evaluate", "--data", manifest, "--victim", f"v={v}", "--attack", "f=fgsm", "--no-perceptual"]
    evaluate += ["--no-report", "--clip-seconds", "1", "--out", tmp_path / "e", "--quiet"]
    assert "'zzz' (1)" in one_error(capsys, *evaluate)
    code, err = run_cli(capsys, *evaluate, "--skip-bad")  # the same folder, no --force needed
    assert code == 0, err
    assert (tmp_path / "e" / "results.json").is_file()


def test_resume_refuses_audio_replaced_under_the_same_name_and_size(tmp_path, capsys):
    import soundfile as sf

    rows = [(f"{i}.wav", EMOTIONS[i % 4], "test") for i in range(4)]
    (tmp_path / "data").mkdir()
    manifest = _manifest(tmp_path / "data", rows)
    v = victim_file(tmp_path / "v.pt")
    evaluate = ["evaluate", "--data", manifest, "--victim", f"v={v}", "--attack", "f=fgsm", "--no-perceptual"]
    evaluate += ["--no-report", "--clip-seconds", "1", "--out", tmp_path / "e", "--quiet"]
    assert run_cli(capsys, *evaluate)[0] == 0
    wav = tmp_path / "data" / "2.wav"
    size, before = wav.stat().st_size, manifest.read_bytes()
    sf.write(str(wav), tone(seed=99, freq=440.0), 16_000)  # new audio, the same length and format
    assert wav.stat().st_size == size and manifest.read_bytes() == before
    err = one_error(capsys, *evaluate, "--resume")
    assert "changed since this run started (audio files)" in err


def test_odd_files_are_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    import numpy as np
    import soundfile as sf

    from staa.io.audio import AudioError, load_audio, save_audio

    (tmp_path / "data").mkdir()
    v = victim_file(tmp_path / "v.pt")
    attack = lambda data, *extra: ["attack", "--data", data, "--victim", v, "--attack", "fgsm", *extra, "--quiet"]
    wide = tmp_path / "data" / "wide.csv"  # one field past the csv module's limit
    wide.write_text("path,label,split\n" + "a" * 200_000 + ".wav,angry,test\n")
    assert "wide.csv:2: is not a readable CSV row" in one_error(capsys, *attack(wide, "--out", tmp_path / "o1"))
    latin = tmp_path / "data" / "latin.csv"
    latin.write_bytes("path,label,split\nd\xe9j\xe0.wav,angry,test\n".encode("latin-1"))
    assert "latin.csv: is not UTF-8 text" in one_error(capsys, *attack(latin, "--out", tmp_path / "o2"))
    # an 11-minute file is refused from its header, before gigabytes would be decoded
    sf.write(str(tmp_path / "long.wav"), np.zeros(4_000 * 660, dtype=np.int16), 4_000, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"long.wav: is 11 min long; clips longer than 10 min are refused"):
        load_audio(tmp_path / "long.wav")
    escape = _manifest(tmp_path / "data", [("0.wav", "angry", "test"), ("1.wav", "\x1b[31mred", "test")], name="e.csv")
    err = one_error(capsys, *attack(escape, "--out", tmp_path / "o3"))
    assert "\x1b" not in err and "\\x1b[31mred" in err
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert "deep.toml: not valid TOML" in one_error(capsys, "evaluate", "--config", deep, "--out", tmp_path / "o4")
    assert "is not valid UTF-8" in one_error(capsys, *attack(escape, "--out", str(tmp_path / "o\udcff")))

    def short_write(*args, **kwargs):  # what soundfile does when the disk fills mid-write
        raise AssertionError

    monkeypatch.setattr(sf, "write", short_write)
    with pytest.raises(OSError, match="the disk is full") as caught:
        save_audio(tmp_path / "full.wav", np.zeros(160, dtype=np.float32), 16_000)
    assert caught.value.filename == str(tmp_path / "full.wav") and not (tmp_path / "full.wav").exists()
