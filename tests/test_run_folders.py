"""Run folders: --force removes only what a command wrote, inputs are never inside --out, one run per folder,
--resume refuses changed inputs, and a generator finds its own surrogate wherever the run tree goes."""

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from staa.cli import main
from staa.cli.run_dir import RunDir, RunDirError
from staa.datasets.synthetic.corpus import EMOTIONS
from staa.generator import load_generator, read_record, save_generator
from staa.generator.network import PRESETS, GeneratorConfig, STAAGenerator
from staa.io.atomic import atomic_open, write_json
from staa.io.checkpoint import CheckpointError
from staa.models import build_model
from staa.models.victim import save_victim


def victim_file(path: Path, seed: int = 0) -> Path:
    """An untrained (seeded) mel_cnn victim: enough for every path that only loads and runs a model."""
    torch.manual_seed(seed)
    save_victim(path, build_model("mel_cnn", len(EMOTIONS), width=4).eval(), "mel_cnn", EMOTIONS, 16_000)
    return path


def conditional_generator(path: Path, surrogate: Path) -> Path:
    torch.manual_seed(0)
    gen = STAAGenerator(GeneratorConfig(**{**asdict(PRESETS["cpu"]), "num_classes": len(EMOTIONS)}))
    save_generator(path, gen, sample_rate=16_000, classes=EMOTIONS, surrogates=[surrogate])
    return path


def evaluate_args(manifest, victim, out, *extra):
    return [
        "evaluate",
        "--data",
        str(manifest),
        "--victim",
        f"v={victim}",
        "--attack",
        "f=fgsm:eps=0.03",
        "--max-clips",
        "4",
        "--no-perceptual",
        "--no-report",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def err_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


# ---- data loss: --force and inputs inside --out -------------------------------------------------------------


def test_force_never_deletes_the_surrogate_it_reads(corpus, tmp_path, capsys):
    manifest, _ = corpus
    shared = tmp_path / "shared"
    surrogate = victim_file(shared / "best.pt")
    before = surrogate.read_bytes()
    code = main(
        [
            "train-attack",
            "--data",
            str(manifest),
            "--surrogate",
            str(surrogate),
            "--out",
            str(shared),
            "--force",
            "--quiet",
        ]
    )
    assert code == 2 and "holds the input" in err_line(capsys)
    assert surrogate.read_bytes() == before


def test_force_never_deletes_a_dataset_inside_out(corpus, tmp_path, capsys):
    manifest, _ = corpus
    data = tmp_path / "D" / "examples"
    shutil.copytree(manifest.parent, data)
    victim = victim_file(tmp_path / "v.pt")
    files = sorted(p for p in data.rglob("*") if p.is_file())
    assert main(evaluate_args(data / "manifest.csv", victim, tmp_path / "D", "--force")) == 2
    assert "holds the data folder" in err_line(capsys)
    assert sorted(p for p in data.rglob("*") if p.is_file()) == files


def test_absolute_audio_paths_inside_out_are_refused(corpus, tmp_path, capsys):
    manifest, _ = corpus
    out = tmp_path / "out"
    shutil.copytree(manifest.parent / "test", out / "audio")
    rows = [
        {"path": str(p), "label": p.stem.split("_")[1], "split": "test"} for p in sorted((out / "audio").glob("*.wav"))
    ]
    elsewhere = tmp_path / "lists" / "m.csv"
    elsewhere.parent.mkdir()
    with elsewhere.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    assert main(evaluate_args(elsewhere, victim_file(tmp_path / "v.pt"), out)) == 2
    assert "data folder" in err_line(capsys) and len(list((out / "audio").glob("*.wav"))) == len(rows)


def test_out_through_a_symlink_into_the_data_is_refused(corpus, tmp_path, capsys):
    manifest, _ = corpus
    (tmp_path / "link").symlink_to(manifest.parent)
    assert main(evaluate_args(manifest, victim_file(tmp_path / "v.pt"), tmp_path / "link" / "run")) == 2
    assert "never written to" in err_line(capsys)
    assert not (manifest.parent / "run").exists()


def test_force_removes_exactly_what_the_command_wrote(corpus, tmp_path, capsys):
    manifest, _ = corpus
    victim, out = victim_file(tmp_path / "v.pt"), tmp_path / "run"
    assert main(evaluate_args(manifest, victim, out)) == 0
    assert (out / "cells" / "v" / "f.json").is_file()
    (out / "cells" / "notes.txt").write_text("mine")  # a user's file inside a folder the command writes to
    (out / "examples" / "keep").mkdir(parents=True, exist_ok=True)
    (out / "examples" / "keep" / "a.txt").write_text("mine too")
    args = evaluate_args(manifest, victim, out, "--force")
    args[args.index("f=fgsm:eps=0.03")] = "g=fgsm:eps=0.01"  # another grid: the first run's cells must go
    assert main(args) == 0
    assert not (out / "cells" / "v" / "f.json").exists() and (out / "cells" / "v" / "g.json").is_file()
    assert (out / "cells" / "notes.txt").read_text() == "mine" and (
        out / "examples" / "keep" / "a.txt"
    ).read_text() == "mine too"


def test_force_refuses_a_folder_staa_did_not_make_or_of_another_command(corpus, tmp_path, capsys):
    manifest, _ = corpus
    victim, out = victim_file(tmp_path / "v.pt"), tmp_path / "run"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert main(evaluate_args(manifest, victim, out, "--force")) == 2
    assert "was not made by staa-ser" in err_line(capsys) and (out / "thesis.tex").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]  # not even a lock file is left in a folder not ours
    other = tmp_path / "other"
    assert main(evaluate_args(manifest, victim, other)) == 0
    assert (
        main(
            [
                "attack",
                "--data",
                str(manifest),
                "--victim",
                str(victim),
                "--attack",
                "fgsm",
                "--limit",
                "2",
                "--out",
                str(other),
                "--force",
                "--quiet",
            ]
        )
        == 2
    )
    assert "is a `staa evaluate` run folder" in err_line(capsys) and (other / "results.json").is_file()


def test_the_journal_survives_a_crash_and_force_clears_it(tmp_path):
    run = RunDir.claim(tmp_path / "r", "attack")
    with run:
        write_json(tmp_path / "r" / "summary.json", {"a": 1})
        with pytest.raises(KeyboardInterrupt), atomic_open(tmp_path / "r" / "adv" / "x.wav", "wb") as fh:
            fh.write(b"half")
            raise KeyboardInterrupt
    (tmp_path / "r" / "mine.txt").write_text("mine")
    with pytest.raises(RunDirError, match="--resume"):
        RunDir.claim(tmp_path / "r", "attack")
    with RunDir.claim(tmp_path / "r", "attack", force=True):
        pass
    files = [
        p.relative_to(tmp_path / "r").as_posix()
        for p in (tmp_path / "r").rglob("*")
        if p.is_file() and ".staa-run" not in p.parts
    ]
    assert files == ["mine.txt"]


def test_stale_temp_files_of_a_killed_write_are_removed(tmp_path):
    (tmp_path / "r").mkdir()
    with RunDir.claim(tmp_path / "r", "attack"):
        pass
    stale = tmp_path / "r" / "adv" / ".000001_x.wav.k2j3h4g5.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"half a file")
    with RunDir.claim(tmp_path / "r", "attack", resume=True):
        pass
    assert not stale.exists()


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {})
        os.umask(0o077)
        write_json(tmp_path / "b.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600


# ---- one run per folder --------------------------------------------------------------------------------------

HOLD = "import sys, time; from staa.io.lock import FolderLock; FolderLock(sys.argv[1], 'attack'); print('held', flush=True); time.sleep(60)"


def test_a_second_run_into_a_held_folder_is_refused_and_a_dead_holder_is_taken_over(corpus, tmp_path, capsys, caplog):
    manifest, _ = corpus
    victim, out = victim_file(tmp_path / "v.pt"), tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(evaluate_args(manifest, victim, out)) == 2
        assert f"another staa run is writing here (pid {holder.pid}" in err_line(capsys)
    finally:
        holder.kill()  # SIGKILL: no clean-up, the pid stays in the lock file
        holder.wait()
    assert main(evaluate_args(manifest, victim, out)) == 0
    assert f"pid {holder.pid}" in caplog.text and "taking over" in caplog.text


def test_two_commands_started_together_one_is_refused(corpus, tmp_path):
    manifest, _ = corpus
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "staa",
        "train-victim",
        "--data",
        str(manifest),
        "--arch",
        "mel_cnn",
        "--epochs",
        "1",
        "--clip-seconds",
        "0.5",
        "--model-options",
        '{"width": 4}',
        "--threads",
        "1",
        "--out",
        str(out),
        "--quiet",
    ]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "another staa run is writing here" in refused or "not empty" in refused
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 1


# ---- --resume checks its inputs ---------------------------------------------------------------------------------


def test_resume_refuses_a_replaced_victim(corpus, tmp_path, capsys):
    manifest, _ = corpus
    victim, out = victim_file(tmp_path / "v.pt"), tmp_path / "run"
    assert main(evaluate_args(manifest, victim, out)) == 0
    victim_file(victim, seed=1)  # another model at the same path
    assert main(evaluate_args(manifest, victim, out, "--resume")) == 2
    assert f"{victim}: changed since this run started" in err_line(capsys)


def test_the_harness_itself_refuses_cells_of_another_victim_file(corpus, tmp_path):
    from eval.config import EvalConfig
    from eval.harness import run_grid

    manifest, _ = corpus
    victim = victim_file(tmp_path / "v.pt")
    cfg = EvalConfig(
        data=str(manifest),
        victims={"v": str(victim)},
        attacks={"f": "fgsm:eps=0.03"},
        max_clips=4,
        perceptual=False,
        workers=1,
    )
    run_grid(cfg, tmp_path / "run", progress=False)
    victim_file(victim, seed=1)
    with pytest.raises(ValueError, match="not the victim file"):
        run_grid(cfg, tmp_path / "run", progress=False)


# ---- a generator finds its own surrogate ---------------------------------------------------------------------


def test_a_generator_loads_the_surrogate_it_records_from_any_working_directory(tmp_path, monkeypatch, caplog):
    from staa.attacks import STAA

    tree = tmp_path / "runs"
    surrogate = victim_file(tree / "v" / "best.pt", seed=0)
    conditional_generator(tree / "g" / "best.pt", surrogate)
    decoy = tmp_path / "elsewhere"
    victim_file(decoy / "v" / "best.pt", seed=1)  # the same relative path, another model
    monkeypatch.chdir(decoy)
    expected = torch.load(surrogate, weights_only=True)["state_dict"]
    loaded = STAA.from_checkpoint(tree / "g" / "best.pt")
    x = 0.1 * torch.randn(2, 16_000, generator=torch.Generator().manual_seed(0))
    model = build_model("mel_cnn", len(EMOTIONS), width=4).eval()
    model.load_state_dict(expected)
    assert torch.equal(loaded.classifier(x).argmax(1), model(x).argmax(1))
    # the whole tree copied elsewhere and the original removed: the relative reference still holds
    shutil.copytree(tree, tmp_path / "copy")
    shutil.rmtree(tree)
    assert STAA.from_checkpoint(tmp_path / "copy" / "g" / "best.pt").generator.conditional
    # a replaced surrogate is refused, an explicit one is used and said so
    victim_file(tmp_path / "copy" / "v" / "best.pt", seed=2)
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        STAA.from_checkpoint(tmp_path / "copy" / "g" / "best.pt")
    STAA.from_checkpoint(tmp_path / "copy" / "g" / "best.pt", surrogate=decoy / "v" / "best.pt")
    assert "using the surrogate" in caplog.text


def test_a_copied_run_folder_attacks_from_another_working_directory(corpus, tmp_path, monkeypatch, capsys):
    manifest, _ = corpus
    run = tmp_path / "run"
    surrogate = victim_file(run / "victims" / "mel_cnn" / "best.pt")
    conditional_generator(run / "attacks" / "mel_cnn" / "best.pt", surrogate)
    shutil.copytree(run, tmp_path / "moved" / "run")
    shutil.rmtree(run)
    saved = read_record(tmp_path / "moved" / "run" / "attacks" / "mel_cnn" / "best.pt")
    assert saved.surrogates == (
        os.path.join("..", "..", "victims", "mel_cnn", "best.pt"),
    )  # relative to the checkpoint
    monkeypatch.chdir(tmp_path / "moved")
    args = [
        "attack",
        "--data",
        str(manifest),
        "--victim",
        "run/victims/mel_cnn/best.pt",
        "--attack",
        "staa",
        "--generator",
        "run/attacks/mel_cnn/best.pt",
        "--limit",
        "3",
        "--out",
        "out",
        "--quiet",
    ]
    assert main(args) == 0
    rows = list(csv.DictReader((tmp_path / "moved" / "out" / "clips.csv").open()))
    assert len(rows) == 3 and len(list((tmp_path / "moved" / "out" / "adv").glob("*.wav"))) == 3
    # the same folder under the spec form, and a gradient attack by spec
    common = [*args[:5], "--limit", "3", "--quiet"]
    assert main([*common, "--attack", "staa:generator=run/attacks/mel_cnn/best.pt", "--out", "out2"]) == 0
    assert main([*common, "--attack", "pgd:steps=2", "--out", "out3"]) == 0
    assert "pgd:steps=2: fooling 0.000 of 3" in capsys.readouterr().out
    assert main([*common, "--attack", "fgsm", "--generator", "g.pt", "--out", "out4"]) == 2
    assert "go with --attack staa" in capsys.readouterr().err


def test_an_old_generator_without_a_surrogate_hash_needs_an_explicit_surrogate(tmp_path):
    from staa.attacks import STAA

    surrogate = victim_file(tmp_path / "v.pt")
    path = conditional_generator(tmp_path / "g.pt", surrogate)
    ckpt = torch.load(path, weights_only=True)
    ckpt["surrogates"], ckpt["surrogate_sha256"], ckpt["surrogates_absolute"] = [str(surrogate)], [], []
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="without a hash"):
        STAA.from_checkpoint(path)
    assert STAA.from_checkpoint(path, surrogate=surrogate).generator.conditional


def test_a_corpus_build_cleans_up_after_a_killed_one(tmp_path):
    from staa.datasets.synthetic.corpus import CorpusConfig, _fingerprint, build_corpus

    root = tmp_path / "c"
    stale = root / "train" / ".000000_neutral.wav.abcd1234.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    # what a killed build of the same settings leaves: its unfinished marker, written before the first clip
    write_json(root / "corpus.json", {"fingerprint": _fingerprint(CorpusConfig(n_clips=12)), "complete": False})
    build_corpus(root, CorpusConfig(n_clips=12), workers=1, progress=False)
    assert not stale.exists() and len(list(root.rglob("*.wav"))) == 12


def test_a_held_corpus_folder_is_refused(tmp_path):
    from staa.datasets.synthetic.corpus import CorpusConfig, build_corpus
    from staa.io.lock import FolderLock, LockError

    with FolderLock(tmp_path / "c", "corpus"), pytest.raises(LockError, match="another staa run"):
        build_corpus(tmp_path / "c", CorpusConfig(n_clips=12), workers=1, progress=False)


def test_ctrl_c_in_corpus_is_one_line_and_keeps_the_finished_clips(tmp_path):
    import signal

    root = tmp_path / "c"
    cmd = [sys.executable, "-m", "staa", "corpus", "--out", str(root), "--clips", "3000", "--workers", "2", "--quiet"]
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not list(root.rglob("*.wav")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole process group
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines() == [
        "staa corpus: interrupted; rerun the same command to continue (finished clips are kept)"
    ]
    assert not (root / "manifest.csv").exists() and list(root.rglob("*.wav"))


def test_evaluate_takes_an_explicit_surrogate_in_the_attack_spec(corpus, tmp_path, capsys):
    manifest, _ = corpus
    surrogate = victim_file(tmp_path / "s.pt")
    gen = conditional_generator(tmp_path / "g" / "best.pt", surrogate)
    moved = tmp_path / "moved.pt"
    surrogate.rename(moved)  # the recorded surrogate is gone
    args = evaluate_args(manifest, victim_file(tmp_path / "v.pt", seed=3), tmp_path / "a")
    args[args.index("f=fgsm:eps=0.03")] = f"s=staa:generator={gen}"
    assert main(args) == 2 and "is not there" in capsys.readouterr().err
    args[args.index(f"s=staa:generator={gen}")] = f"s=staa:generator={gen}:surrogate={moved}"
    assert main([*args, "--force"]) == 0
    assert json.loads((tmp_path / "a" / "results.json").read_text())["cells"][0]["attack_type"] == "staa"


def test_a_generator_reloads_with_the_budget_it_was_set_to_not_its_float32_neighbour(tmp_path):
    gen = load_generator(conditional_generator(tmp_path / "gen.pt", victim_file(tmp_path / "v.pt")))
    for eps in (0.03, 0.002, 0.0123):
        gen.set_eps(eps)
        assert float(gen.eps) != eps  # the buffer is float32
        save_generator(tmp_path / "g.pt", gen, sample_rate=16_000, classes=EMOTIONS, surrogates=[tmp_path / "v.pt"])
        assert load_generator(tmp_path / "g.pt").cfg.eps == read_record(tmp_path / "g.pt").eps == eps
