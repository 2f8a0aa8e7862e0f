import subprocess
import sys

import pytest

from staa.cli import main

COMMANDS = [
    "corpus",
    "train-victim",
    "train-attack",
    "train-universal",
    "attack",
    "transfer",
    "adv-train",
    "evaluate",
    "report",
    "bench",
    "certify",
    "detect",
    "demo",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and "usage: staa " + command in capsys.readouterr().out


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "staa", "--help"], capture_output=True, text=True, check=True).stdout
    assert all(c in out for c in COMMANDS)


def test_bad_data_folder_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    code = main(
        [
            "train-victim",
            "--data",
            str(tmp_path / "missing"),
            "--dataset",
            "emodb",
            "--arch",
            "mel_cnn",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "EmoDB root folder not found" in err and "Traceback" not in err


def test_outputs_never_go_inside_the_data_folder(corpus, capsys):
    manifest, _ = corpus
    code = main(
        ["train-victim", "--data", str(manifest), "--arch", "mel_cnn", "--out", str(manifest.parent / "run"), "--quiet"]
    )
    assert code == 2 and "never written to" in capsys.readouterr().err
    assert not (manifest.parent / "run").exists()


def test_corpus_command_builds_and_reuses(tmp_path, capsys):
    assert main(["corpus", "--out", str(tmp_path / "c"), "--clips", "12", "--quiet"]) == 0
    assert (tmp_path / "c" / "manifest.csv").is_file()
    assert main(["corpus", "--out", str(tmp_path / "c"), "--clips", "16", "--quiet"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_a_run_folder_is_reused_only_with_resume_or_force(corpus, tmp_path, capsys):
    import json

    manifest, _ = corpus
    out = tmp_path / "run"
    args = [
        "train-victim",
        "--data",
        str(manifest),
        "--arch",
        "mel_cnn",
        "--epochs",
        "1",
        "--clip-seconds",
        "1",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    first = json.loads((out / "metrics.json").read_text())
    (out / "notes.txt").write_text("mine")
    assert main(args) == 2 and "--resume" in capsys.readouterr().err  # not silently reused
    assert main([*args, "--resume"]) == 0  # finished: nothing is redone
    assert json.loads((out / "metrics.json").read_text())["history"] == first["history"]
    assert main([*args, "--seed", "1", "--resume"]) == 2 and "other settings" in capsys.readouterr().err
    assert main([*args, "--seed", "1", "--force"]) == 0  # starts over with the new settings
    assert json.loads((out / "metrics.json").read_text())["history"] != first["history"]
    assert (out / "notes.txt").read_text() == "mine"  # --force removes only what the command writes


def test_evaluate_takes_one_budget_or_a_list_of_them(capsys):
    from staa.cli.commands import build_parser

    base = ["evaluate", "--data", "d.csv", "--victim", "v=v.pt", "--attack", "p=pgd", "--out", "o"]
    assert build_parser().parse_args([*base, "--eps", "0.01"]).eps == 0.01
    assert build_parser().parse_args([*base, "--eps", "0.002, 0.03"]).eps == [0.002, 0.03]
    for bad in ("0.01,0.01", "0.01,2", "0"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*base, "--eps", bad])
        assert "--eps" in capsys.readouterr().err


def test_version_names_the_installed_package(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"staa-ser {version('staa-ser')}"
