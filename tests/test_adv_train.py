import os
import subprocess
import sys

import pytest
import torch

from staa.datasets import load_records
from staa.datasets.synthetic.corpus import EMOTIONS
from staa.models.victim import load_victim
from staa.training.adversarial import METHODS, AdvTrainConfig, Step, adv_train
from tests.conftest import subset_manifest

TINY = {
    "d_model": 16,
    "layers": 1,
    "heads": 2,
    "n_mels": 32,
    "dropout": 0.0,
}  # no dropout, no batch norm: ranks can match exactly


@pytest.fixture(scope="module")
def records(corpus):
    manifest, _ = corpus
    recs = load_records("manifest", manifest)
    return manifest, [r for r in recs if r.split == "train"][:32] + [r for r in recs if r.split == "val"][:8]


def _cfg(method="generator", **kw):
    base = dict(
        arch="mel_transformer",
        classes=list(EMOTIONS),
        method=method,
        epochs=1,
        batch_size=16,
        clip_seconds=0.5,
        model=TINY,
        pgd_steps=2,
        generator={"generator": {"channels": 4, "levels": 3}},
        checkpoint_every=1,
    )
    return AdvTrainConfig(**{**base, **kw})


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_the_victim_and_the_generator_only_when_asked(method, records, tmp_path):
    _, recs = records
    report = adv_train(_cfg(method), recs, tmp_path, progress=False)
    h = report["history"][0]
    assert torch.isfinite(torch.tensor(h["train_loss"])) and 0 <= h["val_fgsm_accuracy"] <= 1
    assert 0 <= h["val_pgd_accuracy"] <= 1 and -1 <= h["val_grad_alignment"] <= 1
    assert h["catastrophic_overfitting"] is False and report["flags"] == []
    victim = load_victim(tmp_path / "victim.pt")
    torch.manual_seed(0)
    from staa.models import build_model

    untouched = build_model("mel_transformer", 4, **TINY)
    assert any(
        not torch.equal(a, b) for a, b in zip(victim.model.state_dict().values(), untouched.state_dict().values())
    )
    assert (tmp_path / "generator.pt").is_file() == (method in ("generator", "generator_only"))


@pytest.mark.parametrize("crop", [0.0, 0.25])
def test_the_generator_keeps_up_with_the_victim(records, crop):
    """In the min-max game each step first moves the generator against the current victim (on crops or whole clips)."""
    _, recs = records
    cfg = _cfg("generator", gen_crop_seconds=crop)
    from staa.datasets import AudioDataset
    from staa.training.adversarial import _build

    model, opt, gen, gen_opt = _build(cfg, "cpu")
    before = [p.detach().clone() for p in gen.parameters()]
    data = AudioDataset([r for r in recs if r.split == "train"][:16], cfg.classes, clip_seconds=0.5)
    x, y = torch.stack([data[i][0] for i in range(16)]), torch.tensor([data[i][1] for i in range(16)])
    step = Step(cfg, model, model, opt, gen, gen_opt)
    x_adv = step._generator(x, y, seed=0)
    assert x_adv.shape == (8, x.shape[-1])  # half the batch, whole clips
    # within the method's own bound, (1 + noise + step) eps unprojected (a fresh generator's mask may be all closed)
    assert (x_adv - x[:8]).abs().max() <= (1 + cfg.gen_noise + cfg.gen_step) * cfg.eps + 1e-6
    assert any(not torch.equal(a, b) for a, b in zip(before, gen.parameters()))


def test_resume_after_a_kill_mid_epoch_reaches_the_same_weights(records, tmp_path, monkeypatch):
    _, recs = records
    cfg = _cfg("generator", epochs=2)
    adv_train(cfg, recs, tmp_path / "full", progress=False)
    reference = torch.load(tmp_path / "full" / "last.pt", weights_only=True)

    calls = {"n": 0}
    original = Step.__call__

    def dies_on_third_step(
        self, *a, **k
    ):  # step 2 of 2 in epoch 1 would be the 2nd call; the 3rd is mid-epoch 2's first
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(Step, "__call__", dies_on_third_step)
    with pytest.raises(KeyboardInterrupt):
        adv_train(cfg, recs, tmp_path / "killed", progress=False)
    saved = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["state"]
    assert (saved["epoch"], saved["step"]) == (1, 1)  # it died mid-epoch, after the checkpoint of step 1 of epoch 2
    monkeypatch.setattr(Step, "__call__", original)
    adv_train(cfg, recs, tmp_path / "killed", progress=False)
    resumed = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)
    for key in ("state_dict", "generator"):
        for name, value in reference[key].items():
            assert torch.equal(value, resumed[key][name]), (key, name)


def test_the_kept_epoch_is_the_most_accurate_under_pgd_of_those_that_keep_clean_accuracy():
    from staa.training.adversarial import _better, _lr

    cfg = _cfg(max_clean_drop=0.05)

    def kept(start, epochs):
        state = {"start": start, "history": [], "best_epoch": 0}
        for i, (ua, pgd) in enumerate(epochs):
            # FGSM accuracy runs against PGD's here: the rule must read PGD (FGSM is what overfitting inflates)
            state["history"].append({"val_ua": ua, "val_pgd_accuracy": pgd, "val_fgsm_accuracy": 1 - pgd})
            if _better(cfg, state, state["history"][-1]):
                state["best_epoch"] = i + 1
        return state["best_epoch"]

    start = {"val_ua": 0.90, "val_pgd_accuracy": 0.2}
    assert kept(start, [(0.88, 0.4), (0.80, 0.9), (0.86, 0.5)]) == 3  # epoch 2 is robust but lost 10 points
    assert kept(start, [(0.70, 0.4), (0.80, 0.3), (0.75, 0.9)]) == 2  # none within 5 points: the cleanest
    assert kept(start, [(0.70, 0.9), (0.86, 0.3)]) == 2  # one that keeps accuracy beats any that does not
    assert kept({}, [(0.50, 0.1), (0.54, 0.2)]) == 2  # from scratch the best epoch so far sets the bar
    # a collapsed epoch (one class for every clip: chance UA, never fooled) loses to one that learnt the task
    assert kept({}, [(0.25, 0.25), (0.70, 0.05), (0.68, 0.10)]) == 3
    assert _lr(cfg, 0) == pytest.approx(cfg.lr) and _lr(cfg, 1) == pytest.approx(cfg.lr / 10)
    assert all(_lr(cfg, t / 10) > _lr(cfg, (t + 1) / 10) for t in range(10))
    assert _cfg().lr == 5e-4 and _cfg(init_victim="v.pt").lr == 1e-4  # a fine-tune starts gentler


@pytest.fixture(scope="module")
def start(records, tmp_path_factory):
    """A trained tiny victim to fine-tune."""
    out = tmp_path_factory.mktemp("start")
    adv_train(_cfg("clean", epochs=2), records[1], out, progress=False)
    return out / "victim.pt"


def test_clean_kl_anchors_a_fine_tune_to_the_starting_model(records, start, tmp_path):
    from staa.datasets import AudioDataset

    _, recs = records
    val = AudioDataset([r for r in recs if r.split == "val"], list(EMOTIONS), clip_seconds=0.5, crop="center")
    x = torch.stack([val[i][0] for i in range(len(val))])

    def drift(clean_kl):
        cfg = _cfg("fgsm", epochs=1, lr=0.02, init_victim=str(start), clean_kl=clean_kl, max_clean_drop=1.0)
        adv_train(cfg, recs, tmp_path / str(clean_kl), progress=False)
        with torch.no_grad():
            before = torch.log_softmax(load_victim(start).model.eval()(x), 1)
            after = torch.log_softmax(load_victim(tmp_path / str(clean_kl) / "victim.pt").model.eval()(x), 1)
        return float(torch.nn.functional.kl_div(after, before, log_target=True, reduction="batchmean"))

    assert drift(20.0) < 0.5 * drift(0.0)


def test_victim_pt_is_the_kept_epoch_of_a_fine_tune(records, start, tmp_path):
    from staa.models.inference import predict

    _, recs = records
    cfg = _cfg("generator", epochs=3, lr=0.02, init_victim=str(start))
    report = adv_train(cfg, recs, tmp_path / "tuned", progress=False)
    assert report["start"]["val_ua"] > 0 and 1 <= report["best_epoch"] <= 3
    history = report["history"]
    kept = history[report["best_epoch"] - 1]
    ok = [h for h in history if h["val_ua"] >= report["start"]["val_ua"] - cfg.max_clean_drop - 1e-9]
    assert kept == (
        max(ok, key=lambda h: (h["val_pgd_accuracy"], h["val_ua"])) if ok else max(history, key=lambda h: h["val_ua"])
    )
    from staa.datasets import AudioDataset
    from staa.metrics.classification import classification_scores

    val = AudioDataset([r for r in recs if r.split == "val"], cfg.classes, clip_seconds=0.5, crop="center")
    truth, pred = predict(load_victim(tmp_path / "tuned" / "victim.pt").model, val)
    assert classification_scores(truth, pred, 4)["ua"] == pytest.approx(kept["val_ua"])


def test_bad_settings_are_refused():
    for bad in [dict(method="madry"), dict(adv_ratio=1.5), dict(eps=0), dict(defenses=["mp3:0"]), dict(pgd_steps=0)]:
        with pytest.raises(ValueError):
            _cfg(**bad)


def _initial_weights():
    from staa.models import build_model

    torch.manual_seed(0)
    return build_model("mel_transformer", 4, **TINY).state_dict()


def test_two_torchrun_processes_match_one_process(records, tmp_path):
    manifest, _ = records
    (tmp_path / "data").mkdir()
    subset = subset_manifest(manifest, tmp_path / "data" / "subset.csv")
    args = [
        "adv-train",
        "--data",
        str(subset),
        "--arch",
        "mel_transformer",
        "--method",
        "clean",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--clip-seconds",
        "0.5",
        "--quiet",
        "--classes",
        ",".join(EMOTIONS),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    small = ["--model-options", '{"d_model": 16, "layers": 1, "heads": 2, "n_mels": 32, "dropout": 0.0}']
    single = subprocess.run(
        [sys.executable, "-m", "staa", *args, *small, "--out", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    double = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29571",
            "-m",
            "staa",
            *args,
            *small,
            "--out",
            str(tmp_path / "two"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert double.returncode == 0, double.stderr[-3000:]
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    assert two["state"]["history"][0]["seconds"] > 0
    # Compare what the models compute, not raw weights: parameters with no true gradient (attention's key bias,
    # which softmax ignores) get Adam-normalised rounding noise that differs between the runs and changes nothing.
    a, b = load_victim(tmp_path / "one" / "victim.pt").model, load_victim(tmp_path / "two" / "victim.pt").model
    x = torch.randn(4, 8000, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-4)
    moved = max((p - q).abs().max().item() for p, q in zip(one["state_dict"].values(), _initial_weights().values()))
    assert moved > 1e-3  # they trained: the agreement is not that of two untouched models


def test_train_victim_under_torchrun_matches_one_process(records, tmp_path):
    manifest, _ = records
    (tmp_path / "data").mkdir()
    subset = subset_manifest(manifest, tmp_path / "data" / "subset.csv")
    args = [
        "train-victim",
        "--data",
        str(subset),
        "--arch",
        "mel_transformer",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--clip-seconds",
        "0.5",
        "--quiet",
        "--classes",
        ",".join(EMOTIONS),
        "--model-options",
        '{"d_model": 16, "layers": 1, "heads": 2, "n_mels": 32, "dropout": 0.0}',
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "staa", *args, "--out", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    double = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29572",
            "-m",
            "staa",
            *args,
            "--out",
            str(tmp_path / "two"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert double.returncode == 0, double.stderr[-3000:]
    assert double.stdout.count("best val UA") == 1  # rank 0 alone reports and writes
    a, b = load_victim(tmp_path / "one" / "last.pt").model, load_victim(tmp_path / "two" / "last.pt").model
    fresh = load_victim(tmp_path / "one" / "last.pt").model
    fresh.load_state_dict(_initial_weights())
    x = torch.randn(4, 8000, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-4)
        assert (a(x) - fresh(x)).abs().max() > 1e-3  # both trained: they moved from the same start


def test_catastrophic_overfitting_is_flagged_on_a_collapse_and_not_on_a_healthy_run():
    from staa.training.adversarial import catastrophic_overfitting

    epoch = lambda fgsm, pgd, ua=0.8: {"val_fgsm_accuracy": fgsm, "val_pgd_accuracy": pgd, "val_ua": ua}
    start = epoch(0.10, 0.05)
    healthy = [epoch(0.40, 0.30), epoch(0.45, 0.35), epoch(0.47, 0.33)]  # a small dip is noise
    assert not any(catastrophic_overfitting(healthy[: i + 1], start) for i in range(3))
    collapse = [epoch(0.40, 0.30), epoch(0.45, 0.36), epoch(0.90, 0.02)]  # FGSM soars while PGD falls to nothing
    assert [catastrophic_overfitting(collapse[: i + 1], start) for i in range(3)] == [False, False, True]
    both_fall = [epoch(0.40, 0.30), epoch(0.10, 0.05)]  # everything got worse: not the single-step blind spot
    assert not catastrophic_overfitting(both_fall, start)
    assert not catastrophic_overfitting([epoch(0.9, 0.0)], None)  # nothing to compare with
    # from scratch: a first epoch that predicts one class (chance UA) is never fooled; learning the task is no collapse
    scratch = [epoch(0.27, 0.27, ua=0.25), epoch(0.48, 0.0, ua=0.56), epoch(0.39, 0.03, ua=0.68)]
    assert not any(catastrophic_overfitting(scratch[: i + 1]) for i in range(3))
    near_chance = [epoch(0.33, 0.19, ua=0.25), epoch(0.31, 0.02, ua=0.30)]  # both barely above 4-class chance
    assert not catastrophic_overfitting(near_chance, chance=0.25)
    assert catastrophic_overfitting(collapse, start, chance=0.25)  # a real collapse still fires


def test_nfgsm_starts_beyond_eps_as_published_and_ends_within_its_bound():
    from staa.training.adversarial import nfgsm
    from tests.conftest import fit_tone_model

    model, x = fit_tone_model()
    y = model(x).argmax(1)
    eps, k = 0.002, 2.0
    adv = nfgsm(model, x, y, eps, k, seed=0)
    delta = adv - x
    assert delta.abs().max() > eps  # no projection onto the eps-ball: the noise alone reaches 2 eps
    assert delta.abs().max() <= (k + 1) * eps + 1e-6 and adv.abs().max() <= 1
    noise = (torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1) * k * eps
    assert torch.allclose((delta - noise).abs(), torch.full_like(delta, eps), atol=1e-6)  # then one step of eps
    assert torch.equal(adv, nfgsm(model, x, y, eps, k, seed=0))


def test_the_generator_method_steps_from_the_generators_perturbation_and_trains_it_on_the_loss_after(records):
    from staa.datasets import AudioDataset
    from staa.training.adversarial import _build

    _, recs = records
    cfg = _cfg("generator", gen_crop_seconds=0, eps=0.01, gen_noise=0.0, gen_project=True)  # FGSM-SDI's rule
    model, opt, gen, gen_opt = _build(cfg, "cpu")
    data = AudioDataset([r for r in recs if r.split == "train"][:8], cfg.classes, clip_seconds=0.5)
    x, y = torch.stack([data[i][0] for i in range(8)]), torch.tensor([data[i][1] for i in range(8)])
    step = Step(cfg, model, model, opt, gen, gen_opt)
    loss_after = lambda: -step._loss_after_step(x, y, 0)[0].item()
    torch.manual_seed(0)
    before = [p.detach().clone() for p in gen.parameters()]
    x_adv = step._generator(x, y, seed=0)
    assert x_adv.shape == x[:4].shape and (x_adv - x[:4]).abs().max() <= cfg.eps + 1e-6
    # the signed step moves (nearly) every sample: unlike the sparse generator output alone
    assert ((x_adv - x[:4]).abs() > 0).float().mean() > 0.5
    assert any(not torch.equal(a, b) for a, b in zip(before, gen.parameters()))
    model.eval().requires_grad_(False)
    first = loss_after()
    for _ in range(5):
        loss, _ = step._loss_after_step(x, y, 0)
        gen_opt.zero_grad()
        loss.backward()
        gen_opt.step()
    assert loss_after() > first  # the generator learns to raise the victim's loss after the step


def test_the_generator_start_with_noise_stays_in_the_ball_and_differs_from_the_sparse_start(records):
    from staa.datasets import AudioDataset
    from staa.training.adversarial import _build

    _, recs = records
    data = AudioDataset([r for r in recs if r.split == "train"][:8], list(EMOTIONS), clip_seconds=0.5)
    x, y = torch.stack([data[i][0] for i in range(8)]), torch.tensor([data[i][1] for i in range(8)])
    made = {}
    for noise in (0.0, 1.0):
        cfg = _cfg("generator", gen_crop_seconds=0, eps=0.01, gen_noise=noise, gen_step=1.25, gen_project=True)
        torch.manual_seed(0)
        model, opt, gen, gen_opt = _build(cfg, "cpu")
        step = Step(cfg, model, model, opt, gen, gen_opt)
        delta = torch.full((2, 100), 0.01)
        noisy = step._with_noise(delta, seed=3)
        assert noisy.abs().max() <= 0.01 + 1e-9 and (noise == 0) == torch.equal(noisy, delta)
        torch.manual_seed(0)
        made[noise] = step._generator(x, y, seed=0)
        assert (made[noise] - x[:4]).abs().max() <= cfg.eps + 1e-6  # a step of 1.25 eps, projected back
    assert not torch.equal(made[0.0], made[1.0])
    with pytest.raises(ValueError, match="gen_noise"):
        _cfg("generator", gen_noise=-1.0)


def test_the_unprojected_generator_example_leaves_the_ball_as_n_fgsm_does_and_stays_within_its_own_bound(records):
    from staa.datasets import AudioDataset
    from staa.training.adversarial import _build

    _, recs = records
    data = AudioDataset([r for r in recs if r.split == "train"][:8], list(EMOTIONS), clip_seconds=0.5)
    x, y = torch.stack([data[i][0] for i in range(8)]), torch.tensor([data[i][1] for i in range(8)])
    cfg = _cfg("generator", gen_crop_seconds=0, eps=0.01)  # the default: noise of 2 eps, a step of eps, unprojected
    torch.manual_seed(0)
    model, opt, gen, gen_opt = _build(cfg, "cpu")
    step = Step(cfg, model, model, opt, gen, gen_opt)
    assert step._with_noise(torch.zeros(2, 4000), seed=3).abs().max() > 0.015  # noise of +-2 eps, not clipped
    torch.manual_seed(0)
    dist = (step._generator(x, y, seed=0) - x[:4]).abs()
    assert dist.max() > cfg.eps * 1.5 and dist.max() <= 4 * cfg.eps + 1e-6  # (1 + gen_noise + gen_step) eps


def test_a_method_variant_is_a_spec_over_the_config_typed_by_its_fields():
    from staa.training.adversarial import method_variant

    assert method_variant("generator:gen_noise=1:gen_step=1.25") == ("generator", {"gen_noise": 1.0, "gen_step": 1.25})
    name, over = method_variant("pgd:pgd_steps=5")
    assert name == "pgd" and over == {"pgd_steps": 5} and isinstance(over["pgd_steps"], int)
    for bad in ("pgd:5", "pgd:bogus=1", "pgd:arch=emo18"):
        with pytest.raises(ValueError, match="settings are key=value"):
            method_variant(bad)
