"""Budgets stated as an SNR per clip (`--snr`, `snr = ...`, `pgd:snr=30`)."""

import csv

import pytest
import soundfile as sf
import torch

from staa.attacks.registry import parse_attack
from staa.attacks.snr_budget import snr_eps
from staa.metrics.perturbation import snr_db

GAINS = [1.0, 0.25, 0.05, 0.01]  # the tones' loudness spans 40 dB


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """The conftest tone victim as a checkpoint, and its 16 tones at four loudness levels as a manifest."""
    from staa.models.victim import save_victim
    from tests.conftest import fit_tone_model

    folder = tmp_path_factory.mktemp("tones")
    model, x = fit_tone_model()
    classes = ["low", "mid", "high", "top"]
    save_victim(folder / "tones.pt", model, "mel_cnn", classes, 16_000)
    lines = ["path,label,split"]
    for i, clip in enumerate(x):
        sf.write(str(folder / f"{i}.wav"), (GAINS[i // 4] * clip).numpy(), 16_000, subtype="FLOAT")
        lines.append(f"{i}.wav,{classes[i % 4]},test")
    (folder / "tones.csv").write_text("\n".join(lines) + "\n")
    return folder, model, x * torch.tensor(GAINS).repeat_interleave(4)[:, None]


def _snrs(tones, tmp_path, *budget):
    from staa.cli import main

    folder = tones[0]
    out = tmp_path / "_".join(budget).replace("-", "")
    args = ["attack", "--data", str(folder / "tones.csv"), "--victim", str(folder / "tones.pt"), "--attack", "fgsm"]
    assert main([*args, *budget, "--clip-seconds", "0.5", "--out", str(out), "--quiet"]) == 0
    with open(out / "clips.csv", newline="") as fh:
        return [float(r["snr_db"]) for r in csv.DictReader(fh)]


def test_snr_30_gives_every_clip_a_30_db_perturbation_whatever_its_loudness(tones, tmp_path):
    fixed = _snrs(tones, tmp_path, "--eps", "0.001")
    assert len(fixed) == 16 and max(fixed) - min(fixed) > 30  # an absolute eps: 40 dB apart, as the clips are
    by_snr = _snrs(tones, tmp_path, "--snr", "30")
    assert len(by_snr) == 16 and all(abs(s - 30) <= 0.5 for s in by_snr), by_snr


@pytest.mark.parametrize("spec", ["pgd:steps=5:snr=30", "apgd:steps=5:snr=30", "square:queries=20:snr=30"])
def test_an_snr_budget_bounds_each_clips_perturbation(spec, tones):
    _, model, x = tones
    x_adv = parse_attack(spec).build(model, seed=0)(x)
    bound = snr_eps(x, 30.0)
    assert ((x_adv - x).abs().amax(dim=1) <= bound.float() * (1 + 1e-5)).all()
    assert (snr_db(x, x_adv) >= 30 - 1e-3).all()
    # the budget each clip gets is its loudness 30 dB down, rounded down by less than the 0.1 dB grid
    rms = x.double().pow(2).mean(1).sqrt()
    gap = 20 * torch.log10(rms / bound) - 30
    assert ((gap >= -1e-9) & (gap < 0.1 + 1e-9)).all()


def test_a_grid_swept_over_snr_budgets_names_records_and_draws_them(tones, tmp_path):
    from eval.config import EvalConfig
    from eval.harness import run_grid
    from eval.report import build_report

    folder = tones[0]
    cfg = EvalConfig(
        data=str(folder / "tones.csv"),
        victims={"tones": str(folder / "tones.pt")},
        attacks={"pgd": "pgd:steps=5", "fgsm": "fgsm:eps=0.0001"},  # a spec's own eps stays
        snr=[80, 70, 60],
        clip_seconds=0.5,
        perceptual=False,
        workers=1,
    )
    assert list(cfg.attack_specs) == ["pgd@80dB", "pgd@70dB", "pgd@60dB", "fgsm"]
    results = run_grid(cfg, tmp_path / "run", progress=False)
    cells = {c["attack"]: c for c in results["cells"]}
    assert [cells[f"pgd@{d}dB"]["snr_budget"] for d in (80, 70, 60)] == [80, 70, 60]
    assert cells["pgd@60dB"]["eps"] is None and cells["fgsm"]["eps"] == 0.0001 and cells["fgsm"]["snr_budget"] is None
    assert not [f for f in results["flags"] if f["flag"] == "eps_not_monotone"]
    report = build_report(tmp_path / "run")
    (curve,) = report["security_curves"]
    assert [p["snr_budget"] for p in curve["points"]] == [80, 70, 60]
    accuracy = [p["accuracy"] for p in curve["points"]]
    assert accuracy == sorted(accuracy, reverse=True) and accuracy[0] > accuracy[-1]
    assert "60 dB SNR" in (tmp_path / "run" / "report.html").read_text()


@pytest.mark.parametrize(
    "spec, problem",
    [
        ("pgd:eps=0.01:snr=30", "give one budget"),
        ("cw:snr=30", "takes no snr"),
        ("fresh_staa:snr=30", "takes no snr"),
        ("pgd:snr=200", "within -20-120"),
        ("pgd:snr=loud", "a number of dB"),
    ],
)
def test_bad_snr_specs_are_refused_by_name(spec, problem):
    with pytest.raises(ValueError, match=problem):
        parse_attack(spec)


def test_the_attack_command_refuses_snr_with_an_attack_of_its_own_budget(tones, tmp_path, capsys):
    from staa.cli import main

    folder = tones[0]
    args = ["attack", "--data", str(folder / "tones.csv"), "--victim", str(folder / "tones.pt"), "--snr", "30"]
    assert main([*args, "--attack", "fgsm:eps=0.01", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "--snr: 'fgsm:eps=0.01' has a budget of its own" in capsys.readouterr().err
