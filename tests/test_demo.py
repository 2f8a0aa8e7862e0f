"""The whole pipeline at toy size: it runs end to end, and kill -9 at random moments loses nothing."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

# Every step of the real demo, at a size that runs in seconds: two victims, a generator, generator AT, a grid, a report.
TINY = (
    "DemoPlan(n_clips=60, victims=('emo18', 'mel_cnn'), victim_epochs=2, generator_epochs=2, at_epochs=1, eval_clips=8, "
    "defenses=('none', 'quantize:8'), perceptual=False, clip_seconds=1.0)"
)


def _demo(out):
    code = f"from pathlib import Path; from staa.cli.demo import DemoPlan, run_demo; run_demo(Path({str(out)!r}), plan={TINY}, progress=False)"
    return [sys.executable, "-c", code]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _whole_files_only(run):
    """After a kill, whatever has a final name is whole: JSON parses, checkpoints load (temp files are hidden)."""
    for f in run.rglob("*"):
        if f.is_file() and not f.name.startswith("."):
            if f.suffix == ".json":
                json.loads(f.read_text())
            elif f.suffix == ".pt":
                torch.load(f, weights_only=True)


def _cells(run):
    cells = json.loads((run / "eval" / "report.json").read_text())["cells"]
    return [{k: v for k, v in c.items() if k != "seconds_per_clip"} for c in cells]


def test_kill_9_at_random_moments_then_rerun_gives_the_uninterrupted_numbers(tmp_path):
    started = time.time()
    done = subprocess.run(_demo(tmp_path / "whole"), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    whole_seconds = time.time() - started
    assert "report: " in done.stdout and "accuracy under attack" in done.stdout
    assert "emo18 hardened by the generator (epoch 1 of 1 kept): val UA" in done.stdout  # the demo's own numbers
    assert "[95% " in done.stdout and "white-box, " in done.stdout  # with their intervals
    assert "emo18 before and after generator adversarial training (8 test clips" in done.stdout
    report = json.loads((tmp_path / "whole" / "eval" / "report.json").read_text())
    assert set(report["robust_accuracy"]) == {"emo18", "mel_cnn", "emo18_at"}  # the hardened victim is in the grid

    run, rng, kills = tmp_path / "killed", random.Random(0), 0
    for _ in range(3):  # three kills at seeded random moments of the run's duration
        proc = subprocess.Popen(_demo(run), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=rng.uniform(3.0, 0.8 * whole_seconds))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            _whole_files_only(run)
    assert kills >= 1
    rerun = subprocess.run(_demo(run), env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    got, want = _cells(run), _cells(tmp_path / "whole")
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == (pytest.approx(b[k], rel=1e-6, abs=1e-9) if isinstance(b[k], float) else b[k]), (
                a["victim"],
                a["attack"],
                k,
            )


def test_the_seed_reaches_the_trainers_and_a_folder_of_another_seed_is_refused(tmp_path, monkeypatch):
    from staa.cli import demo

    seen = []

    def first_trainer(cfg, *args, **kwargs):
        seen.append(cfg.seed)
        raise KeyboardInterrupt  # stop at the first training step: only its settings matter here

    monkeypatch.setattr(demo, "build_corpus", lambda out, cfg, progress: out / "manifest.csv")
    monkeypatch.setattr(demo, "load_records", lambda kind, path: [])
    monkeypatch.setattr(demo, "train_victim", first_trainer)
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(tmp_path, quick=True, seed=7, progress=False)
    assert seen == [7]
    with pytest.raises(ValueError, match=r"demo\.json: holds a demo of other settings \(seed 7\)"):
        demo.run_demo(tmp_path, quick=True, seed=1, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        demo.run_demo(tmp_path, quick=False, seed=7, progress=False)  # another plan
    with pytest.raises(KeyboardInterrupt):  # the same settings resume
        demo.run_demo(tmp_path, quick=True, seed=7, progress=False)
    assert seen == [7, 7]


@pytest.mark.parametrize("after, flagged", [(0.80, False), (0.70, True)])
def test_the_hardened_model_is_flagged_when_it_loses_more_than_the_guard_on_test(capsys, after, flagged):
    from staa.cli.demo import _hardening_on_test

    cell = lambda victim, clean, adv: {
        "victim": victim,
        "attack": "staa",
        "defense": "none",
        "n": 100,
        "clean_accuracy": clean,
        "robust_accuracy": adv,
    }
    report = {
        "cells": [
            cell("mel_cnn", 0.83, 0.10),
            cell("mel_cnn_at", after, 0.40),
            {**cell("mel_cnn_at", 0.10, 0.0), "defense": "mp3:32"},
        ]
    }
    got = _hardening_on_test(report, "mel_cnn", 0.05)
    printed = capsys.readouterr().out
    assert got["flag"] is flagged
    assert got["clean_accuracy"] == {"before": 0.83, "after": after}
    assert "0.100 -> 0.400" in printed and "(+30.0 points)" in printed
    assert ("FLAG mel_cnn_at: lost 13.0 points" in printed) is flagged


@pytest.mark.parametrize("name", ["quick", "full"])
def test_the_demo_grids_raise_no_flag_of_their_own_making(name):
    """Each defended cell needs an adaptive attack beside it, and a random defense an EOT one (eval.sanity): the
    demo's grid holds the first and no random defense, so a new user's FLAG lines are findings, not set-up."""
    from defenses.registry import parse_defense
    from staa.attacks.registry import parse_attack
    from staa.cli.demo import PLANS

    plan = PLANS[name]
    assert any(parse_attack(spec).adaptive for spec in plan.attacks.values())
    assert not any(parse_defense(d).random for d in plan.defenses)
    assert len(plan.defenses) > 1  # defended cells are there to flag
