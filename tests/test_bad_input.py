"""Bad input gets one line naming the thing and the problem (exit 2), never a traceback, never silent garbage,
and no parameter can ask for unbounded work."""

import json
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from defenses import parse_defense
from staa.cli import main
from staa.cli.commands import _labels
from staa.datasets.synthetic.corpus import EMOTIONS
from staa.io.atomic import safe_name, write_csv
from staa.io.checkpoint import CheckpointError, load_checkpoint, restore_training, save_checkpoint
from staa.models.victim import load_victim
from tests.conftest import tone, write_wav
from tests.test_run_folders import evaluate_args, victim_file


def run_cli(capsys, *args) -> tuple[int, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:  # argparse: --help (0) or a bad flag (2)
        code = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def one_error(capsys, *args) -> str:
    code, err = run_cli(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    return err


# ---- flags ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["train-victim", "--threads", "-1"], "--threads: -1 is not within 0-1024"),
        (["attack", "--device", "foo"], "'foo' is not a torch device"),
        (["train-victim", "--clip-seconds", "0"], "--clip-seconds: 0 is not > 0"),
        (["train-attack", "--eps", "inf"], "eps must be a finite number"),
        (["attack", "--limit", "-3"], "--limit: -3 is not >= 0"),
        (["corpus", "--clips", "10000000"], "--clips: 10000000 is not within 12-1000000"),
        (["evaluate", "--eps", "nan"], "--eps: nan is not > 0"),
        (["train-victim", "--classes", "angry,angry"], "distinct class names"),
    ],
)
def test_bad_flags_are_one_line(corpus, tmp_path, capsys, args, message):
    manifest, _ = corpus
    victim = victim_file(tmp_path / "v.pt")
    needed = {
        "train-victim": ["--data", manifest, "--arch", "mel_cnn"],
        "attack": ["--data", manifest, "--victim", victim, "--attack", "fgsm"],
        "train-attack": ["--data", manifest, "--surrogate", victim],
        "evaluate": ["--data", manifest, "--victim", f"v={victim}", "--attack", "f=fgsm"],
        "corpus": [],
    }[args[0]]
    assert message in one_error(capsys, *args, *needed, "--out", tmp_path / "out", "--quiet")
    assert not (tmp_path / "out").exists()


def test_settings_that_would_train_nothing_or_attack_no_class_are_refused(corpus, tmp_path, capsys):
    manifest, _ = corpus
    victim = victim_file(tmp_path / "v.pt")
    base = ["--data", manifest, "--out", tmp_path / "out", "--quiet"]
    assert "fewer than one batch of 4096" in one_error(
        capsys, "train-victim", *base, "--arch", "mel_cnn", "--batch-size", "4096"
    )
    assert "no clips of class(es) surprised" in one_error(
        capsys, "train-victim", *base, "--arch", "mel_cnn", "--classes", "angry,surprised"
    )
    assert "target class 99 is not a class index" in one_error(
        capsys, "train-attack", *base, "--surrogate", victim, "--target", "99"
    )
    assert not (tmp_path / "out" / "best.pt").exists()


def test_bad_out_folders_are_one_line(corpus, tmp_path, capsys):
    manifest, _ = corpus
    victim = victim_file(tmp_path / "v.pt")
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in one_error(capsys, *evaluate_args(manifest, victim, tmp_path / "file"))
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    one_error(capsys, *evaluate_args(manifest, victim, tmp_path / "loop" / "run"))


def test_toml_values_are_type_checked(corpus, tmp_path, capsys):
    manifest, _ = corpus
    victim = victim_file(tmp_path / "v.pt")
    head = f'data = "{manifest}"\nvictims = {{v = "{victim}"}}\nattacks = {{f = "fgsm"}}\n'
    for line, message in [
        ("batch_size = 1.5", "batch_size must be an integer"),
        ('perceptual = "no"', "perceptual must be true or false"),
        ("max_clips = true", "max_clips must be an integer"),
        ("eps = inf", "eps must be a finite number"),
        ('attacks = {p = "pgd:steps=99999"}', "steps must be within 1-10000"),
    ]:
        text = (
            head.replace('attacks = {f = "fgsm"}\n', "") + line + "\n"
            if line.startswith("attacks")
            else head + line + "\n"
        )
        (tmp_path / "c.toml").write_text(text)
        assert message in one_error(
            capsys, "evaluate", "--config", tmp_path / "c.toml", "--out", tmp_path / "o", "--quiet"
        )


# ---- checkpoints ----------------------------------------------------------------------------------------------


def test_files_that_are_not_checkpoints_are_one_error(tmp_path):
    good = victim_file(tmp_path / "v.pt")
    cases = {
        "text.pt": b"hello, I am not a checkpoint\n",
        "random.pt": np.random.default_rng(0).bytes(4096),
        "truncated.pt": good.read_bytes()[:300],
        "empty.pt": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=name):
            load_victim(tmp_path / name)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("classes", "angry", "classes must be a list"),
        ("sample_rate", 16000.5, "sample rate"),
        ("arch", 3, "field 'arch'"),
        ("config", {"width": 10**7}, "width must be within"),
        ("state_dict", [1, 2], "weights are not a mapping"),
    ],
)
def test_checkpoint_fields_of_the_wrong_type_are_refused(tmp_path, field, value, message):
    path = victim_file(tmp_path / "v.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt[field] = value
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=message):
        load_victim(path)


def test_nan_weights_are_refused(tmp_path):
    path = victim_file(tmp_path / "v.pt")
    ckpt = torch.load(path, weights_only=True)
    name = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][name] = torch.full_like(ckpt["state_dict"][name], float("nan"))
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=f"weight {name} holds NaN"):
        load_victim(path)


def test_a_tampered_last_checkpoint_cannot_resume(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    for train_state in (
        {"optimizer": "junk", "scheduler": {}, "rng": torch.get_rng_state(), "epoch": 1},
        {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": torch.get_rng_state(), "epoch": "1"},
    ):
        save_checkpoint(tmp_path / "last.pt", "victim", {"state_dict": model.state_dict(), "train_state": train_state})
        ckpt = load_checkpoint(tmp_path / "last.pt", "victim")
        with pytest.raises(CheckpointError, match="last.pt: cannot resume from it"):
            restore_training(tmp_path / "last.pt", ckpt, model, opt, sched, {"epoch": 0})


# ---- defense specs and bounded work ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, message",
    [
        ("resample:inf", "rate must be an integer"),
        ("noise:20:seed=1.5", "seed must be an integer"),
        ("median:99999999", "<= 1001"),
        ("lowpass:4000:taps=100000001", "<= 4095"),
        ("noise:nan", "finite"),
        ("mp3:32:64", "at most 1 parameter"),
        ("lowpass:4000:tap=3", "unknown parameter 'tap'"),
        ("quantize:8.5", "bits must be an integer"),
        ("+".join(["none"] * 300), "at most 1000"),
    ],
)
def test_bad_defense_specs_are_refused_at_parse_time(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_defense(spec)


def test_defenses_check_the_sample_rate_before_any_work():
    for spec, message in [
        ("resample:15999", "reduces to 16000/15999"),
        ("lowpass:9000", "Nyquist"),
        ("opus:16", "opus needs one of"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_defense(spec).check(22_050 if spec.startswith("opus") else 16_000)
    parse_defense("resample:11025").check(16_000)


def test_workers_are_capped_at_the_cpus(caplog):
    from staa.io.workers import worker_pool

    pool = worker_pool(300)
    try:
        assert (
            pool._max_workers <= len(__import__("os").sched_getaffinity(0)) and "300 workers asked for" in caplog.text
        )
    finally:
        pool.shutdown()


def test_a_corpus_that_cannot_fit_on_the_disk_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    import shutil as sh

    monkeypatch.setattr(
        "staa.datasets.synthetic.corpus.shutil.disk_usage",
        lambda p: sh._ntuple_diskusage(10**12, 10**12 - 10**8, 10**8),
    )
    t0 = time.perf_counter()
    assert "need about 9.6 GB, and the disk has 0.1 GB free" in one_error(
        capsys, "corpus", "--clips", "100000", "--out", tmp_path / "c"
    )
    assert time.perf_counter() - t0 < 10 and not list((tmp_path / "c").rglob("*.wav"))


# ---- datasets ------------------------------------------------------------------------------------------------------


def test_every_kind_of_bad_file_is_found_before_training_and_skipped_on_request(tmp_path, capsys):
    from staa.datasets import DatasetError, load_records

    rows = []
    for i in range(12):
        path = write_wav(tmp_path / "d" / f"ok{i}.wav", tone(seed=i))
        rows.append((path.name, EMOTIONS[i % 4], ["train", "val", "test"][i % 3]))
    write_wav(tmp_path / "d" / "stereo.wav", np.stack([tone(), tone()], axis=1))
    write_wav(tmp_path / "d" / "nan.wav", np.full(16_000, np.nan, dtype=np.float32), subtype="FLOAT")
    write_wav(tmp_path / "d" / "clipped.wav", np.sign(tone()).astype(np.float32))
    sf.write(str(tmp_path / "d" / "rate.wav"), tone(rate=2000), 2000)
    (tmp_path / "d" / "folder.wav").mkdir()
    bad = ["stereo.wav", "nan.wav", "clipped.wav", "rate.wav", "folder.wav"]
    manifest = tmp_path / "d" / "manifest.csv"
    manifest.write_text(
        "path,label,split\n"
        + "".join(f"{p},{lab},{s}\n" for p, lab, s in rows)
        + "".join(f"{b},angry,test\n" for b in bad)
    )
    for name, problem in [
        ("stereo", "2 channels"),
        ("nan", "NaN"),
        ("clipped", "is clipped"),
        ("rate", "implausible sample rate"),
        ("folder", "is a folder"),
    ]:
        only = tmp_path / f"{name}.csv"
        only.write_text(f"path,label,split\n{tmp_path / 'd' / (name + '.wav')},angry,test\n")
        with pytest.raises(DatasetError, match=problem):
            load_records("manifest", only)
    assert len(load_records("manifest", manifest, on_error="skip")) == 12
    t0 = time.perf_counter()
    err = one_error(
        capsys,
        "train-victim",
        "--data",
        manifest,
        "--arch",
        "mel_cnn",
        "--epochs",
        "50",
        "--out",
        tmp_path / "o",
        "--quiet",
    )
    assert "stereo.wav" in err and time.perf_counter() - t0 < 10  # found before the first of 50 epochs


def test_evaluate_takes_skip_bad(corpus, tmp_path, capsys):
    manifest, _ = corpus
    data = tmp_path / "data"
    data.mkdir()
    import csv

    with manifest.open(newline="") as fh:
        rows = [{**r, "path": str(manifest.parent / r["path"])} for r in csv.DictReader(fh)]
    rows.append({**rows[-1], "path": str(data / "missing.wav")})
    write_csv(data / "manifest.csv", list(rows[0]), rows)
    victim = victim_file(tmp_path / "v.pt")
    assert "missing.wav: no such file" in one_error(
        capsys, *evaluate_args(data / "manifest.csv", victim, tmp_path / "a")
    )
    assert main(evaluate_args(data / "manifest.csv", victim, tmp_path / "b", "--skip-bad")) == 0


# ---- outputs a user opens ------------------------------------------------------------------------------------------


def test_csv_cells_a_spreadsheet_would_run_are_neutralised(tmp_path):
    write_csv(
        tmp_path / "c.csv",
        ["label", "x"],
        [{"label": '=HYPERLINK("http://x","y")', "x": -1.5}, {"label": "@SUM(A1)", "x": 2}],
    )
    text = (tmp_path / "c.csv").read_text()
    assert "'=HYPERLINK" in text and "'@SUM" in text and ",-1.5" in text


def test_long_or_odd_names_become_distinct_safe_file_names():
    names = ["a" * 300, "a" * 299 + "b", "../../etc", "x/y", "x_y", "resample:8000+" * 40]
    safe = [safe_name(n) for n in names]
    assert len(set(safe)) == len(safe) and all(len(s) <= 100 and "/" not in s and not s.startswith(".") for s in safe)
    assert safe_name("fgsm") == "fgsm"


def test_a_long_defense_chain_runs_and_keeps_its_full_name(corpus, tmp_path, capsys):
    manifest, _ = corpus
    chain = "+".join(["quantize:16"] * 30)
    args = evaluate_args(manifest, victim_file(tmp_path / "v.pt"), tmp_path / "run", "--defense", chain)
    args.remove("--no-report")
    assert main(args) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {c["defense"] for c in results["cells"]} == {chain}


def test_a_hand_edited_results_file_is_refused_or_escaped(corpus, tmp_path, capsys):
    manifest, _ = corpus
    run = tmp_path / "run"
    assert main(evaluate_args(manifest, victim_file(tmp_path / "v.pt"), run)) == 0
    results = json.loads((run / "results.json").read_text())
    results["machine"]["threads"] = "<script>alert(1)</script>"
    results["cells"][0]["victim"] = "<img src=x onerror=alert(1)>"
    (run / "results.json").write_text(json.dumps(results))
    assert main(["report", str(run), "--quiet"]) == 0
    page = (run / "report.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page and "&lt;script&gt;" in page
    for broken, message in [
        ("{", "not a results file"),
        ('{"schema": "staa-ser/results/3", "cells": [{"victim": 1}]}', "no text field"),
        ('{"schema": "staa-ser/results/9", "cells": []}', "schema 'staa-ser/results/9' is not"),
        (
            json.dumps({**results, "cells": [{**results["cells"][0], "success_rate": "high"}]}),
            "success_rate must be a number",
        ),
    ]:
        (run / "results.json").write_text(broken)
        assert message in one_error(capsys, "report", run)


def test_transfer_rows_are_told_apart():
    assert list(_labels(["g/best.pt", "h/best.pt"])) == ["g", "h"]
    assert list(_labels(["g/best.pt", "g/last.pt"])) == ["g/best.pt", "g/last.pt"]
    with pytest.raises(ValueError, match="listed twice"):
        _labels(["g/best.pt", "g/best.pt"])


# ---- property: whatever is typed, exit 0 or 2 with one line, quickly ------------------------------------------------

FLAGS = [
    "--data",
    "--out",
    "--arch",
    "--epochs",
    "--batch-size",
    "--lr",
    "--seed",
    "--clip-seconds",
    "--threads",
    "--device",
    "--classes",
    "--eps",
    "--target",
    "--limit",
    "--victim",
    "--attack",
    "--defense",
    "--generator",
    "--surrogate",
    "--max-clips",
    "--config",
    "--model-options",
    "--workers",
    "--clips",
    "--resume",
    "--force",
    "--quiet",
    "--skip-bad",
    "--split",
    "--preset",
    "--method",
]
VALUES = [
    "0",
    "-1",
    "1.5",
    "inf",
    "nan",
    "1e9",
    "99999999999999999999",
    "",
    "x",
    "cpu",
    "cuda:7",
    "mel_cnn",
    "angry,sad",
    "mp3:32",
    "resample:15999",
    "median:99999999",
    "noise:20:seed=1.5",
    "v=fgsm",
    "f=pgd:steps=0",
    "{}",
    '{"width": 1e9}',
    "[1]",
    "test",
    "paper",
    "generator",
    "/dev/null",
    "/nonexistent/file.pt",
    "MISSING",
    "TEXTFILE",
    "DIR",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from(
        ["train-victim", "train-attack", "attack", "transfer", "adv-train", "evaluate", "report", "bench", "corpus"]
    ),
    pairs=st.lists(st.tuples(st.sampled_from(FLAGS), st.sampled_from(VALUES)), max_size=6),
)
def test_random_command_lines_exit_0_or_2_with_one_line(tmp_path, capsys, command, pairs):
    (tmp_path / "text.pt").write_text("not a checkpoint")
    (tmp_path / "dir").mkdir(exist_ok=True)
    swap = {"MISSING": str(tmp_path / "missing"), "TEXTFILE": str(tmp_path / "text.pt"), "DIR": str(tmp_path / "dir")}
    args = [command]
    for flag, value in pairs:
        args += [flag] if flag in ("--resume", "--force", "--quiet", "--skip-bad") else [flag, swap.get(value, value)]
    if command == "corpus":  # the one command that runs on defaults alone: keep it from building a real corpus
        args += ["--clips", "1000001"]
    t0 = time.perf_counter()
    code, err = run_cli(capsys, *args)
    assert code in (0, 2) and time.perf_counter() - t0 < 30
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "error:" in err, err


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "mp3",
                "opus",
                "vorbis",
                "resample",
                "lowpass",
                "median",
                "wiener",
                "quantize",
                "noise",
                "shift",
                "griffin_lim",
                "torch_gate",
                "spectral_gate",
                "none",
                "bogus",
            ]
        ),
        min_size=1,
        max_size=3,
    ),
    st.lists(
        st.one_of(
            st.integers(-(10**12), 10**12).map(str),
            st.floats(allow_nan=True, allow_infinity=True).map(repr),
            st.sampled_from(["seed=1.5", "taps=5", "x=1", "", "=", "1e400"]),
        ),
        max_size=3,
    ),
)
def test_random_defense_specs_parse_or_raise_a_value_error_quickly(names, params):
    spec = "+".join(":".join([n, *params]) for n in names)
    t0 = time.perf_counter()
    try:
        d = parse_defense(spec)
        d.check(16_000)
        y = d(torch.zeros(1, 1600), 16_000)
        assert y.shape == (1, 1600) and bool(torch.isfinite(y).all())
    except ValueError as err:
        assert str(err) and "\n" not in str(err)
    assert time.perf_counter() - t0 < 10


TOML_KEYS = [
    "data",
    "dataset",
    "split",
    "max_clips",
    "clip_seconds",
    "batch_size",
    "eps",
    "seed",
    "perceptual",
    "perceptual_clips",
    "workers",
    "examples",
    "skip_bad",
    "classes",
    "defenses",
    "victims",
    "attacks",
    "bogus",
]
TOML_VALUES = [
    '"MISSING"',
    '"TEXTFILE"',
    "1",
    "0",
    "-5",
    "1.5",
    "inf",
    "nan",
    "true",
    '"no"',
    "[]",
    '["none", "mp3:31"]',
    '["resample:15999"]',
    "{}",
    '{v = "TEXTFILE"}',
    "{v = 3}",
    '{a = "pgd:steps=1.5"}',
    '{a = "fgsm:eps=2"}',
    '{a = {type = "pgd", steps = 0}}',
    '"test"',
    '"iemocap"',
    '["angry"]',
    "1e400",
    '"' + "x" * 300 + '"',
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.sampled_from(TOML_KEYS), st.sampled_from(TOML_VALUES)), max_size=8, unique_by=lambda kv: kv[0]
    ),
    st.booleans(),
)
def test_random_toml_configs_exit_0_or_2_with_one_line(tmp_path, capsys, items, garble):
    (tmp_path / "text.pt").write_text("not a checkpoint")
    swap = {"MISSING": str(tmp_path / "missing"), "TEXTFILE": str(tmp_path / "text.pt")}
    text = "".join(f"{k} = {v}\n" for k, v in items)
    for word, path in swap.items():
        text = text.replace(word, path)
    if garble:
        text = text.replace("=", "", 1)
    (tmp_path / "c.toml").write_text(text)
    code, err = run_cli(capsys, "evaluate", "--config", tmp_path / "c.toml", "--out", tmp_path / "out", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "error:" in err, err
