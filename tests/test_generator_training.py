import pytest
import torch

from staa.attacks import STAA
from staa.datasets import AudioDataset, load_records
from staa.datasets.synthetic.corpus import EMOTIONS
from staa.generator import RECIPES, AttackTrainConfig, load_generator, parse_eps_schedule, train_generator
from staa.io.checkpoint import CheckpointError
from staa.training.victim import TrainConfig, train_victim


@pytest.fixture(scope="module")
def tiny(corpus, tmp_path_factory):
    manifest, _ = corpus
    recs = load_records("manifest", manifest)
    recs = [r for r in recs if r.split == "train"][:32] + [r for r in recs if r.split == "val"][:8]
    out = tmp_path_factory.mktemp("victim")
    train_victim(
        TrainConfig(
            arch="mel_cnn", classes=list(EMOTIONS), epochs=1, batch_size=16, clip_seconds=1.0, model={"width": 4}
        ),
        recs,
        out,
        progress=False,
    )
    return recs, out / "best.pt"


def _cfg(**kw):
    """A small unconditional generator on short crops: cheap, and its calls need no classes."""
    return AttackTrainConfig(
        **{
            "preset": "cpu",
            "conditional": False,
            "generator": {"channels": 4, "levels": 3},
            "epochs": 3,
            "batch_size": 16,
            "clip_seconds": 0.5,
            "eval_clip_seconds": 1.0,
            **kw,
        }
    )


def test_resume_matches_uninterrupted_and_eps_schedule_applies(tiny, tmp_path, monkeypatch):
    recs, victim = tiny
    cfg = _cfg(eps_schedule=parse_eps_schedule("0:0.03,2:0.01"), max_l0_ratio=1.0)
    report = train_generator(cfg, [victim], recs, tmp_path / "full", progress=False)
    assert [h["eps"] for h in report["history"]] == [0.03, 0.03, 0.01]
    assert all(0 <= h["val_l0_ratio"] <= 1 for h in report["history"])
    # best.pt is ranked at the schedule's final eps, however much more the larger budget fooled before it; the
    # report names the epoch it holds, the one whose val numbers the checkpoint carries
    kept = torch.load(tmp_path / "full" / "best.pt", weights_only=True)
    assert (
        report["best_epoch"] == 3 and report["best_val_fooling_rate"] == report["history"][2]["val_mean_fooling_rate"]
    )
    assert kept["val"] == {k[4:]: v for k, v in report["history"][2].items() if k.startswith("val_")}
    reference = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["state_dict"]

    original = AudioDataset.set_epoch

    def interrupt(self, epoch):
        if epoch == 1 and self.crop == "random":
            raise KeyboardInterrupt
        original(self, epoch)

    monkeypatch.setattr(AudioDataset, "set_epoch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_generator(cfg, [victim], recs, tmp_path / "cut", progress=False)
    monkeypatch.setattr(AudioDataset, "set_epoch", original)
    train_generator(cfg, [victim], recs, tmp_path / "cut", progress=False)
    resumed = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    gen = load_generator(tmp_path / "cut" / "best.pt")
    x = 0.1 * torch.randn(2, 8001)
    assert gen(x).shape == x.shape and (gen(x) - x).abs().max() <= 0.03 + 1e-6
    with pytest.raises(CheckpointError, match="other settings"):
        train_generator(_cfg(kappa=0.5), [victim], recs, tmp_path / "cut", progress=False)
    with pytest.raises(CheckpointError, match="trained at 16000 Hz, the victim runs at 8000 Hz"):
        STAA.from_checkpoint(tmp_path / "cut" / "best.pt", sample_rate=8000)


def test_ensemble_of_surrogates_and_bad_settings(tiny, tmp_path):
    recs, victim = tiny
    report = train_generator(_cfg(epochs=1), [victim, victim], recs, tmp_path / "ens", progress=False)
    assert len(report["history"][0]["val_fooling_rate"]) == 2
    for bad in ("0.03,0.01", "x", "0:-1"):
        with pytest.raises(ValueError, match="eps"):
            AttackTrainConfig(eps_schedule=parse_eps_schedule(bad))
    with pytest.raises(ValueError, match="unknown generator preset"):
        AttackTrainConfig(preset="huge")
    with pytest.raises(ValueError, match="targeted attack needs a target"):
        AttackTrainConfig(targeted=True)
    with pytest.raises(ValueError, match="lr_halving_epochs must be >= 1"):
        AttackTrainConfig(lr_halving_epochs=0)
    with pytest.raises(ValueError, match="training crops must be > 0 s"):
        AttackTrainConfig(clip_seconds=0)


def test_input_diversity_shows_the_surrogates_a_resampled_batch_and_its_gradient_reaches_the_generator(tiny):
    from staa.generator import STAAGenerator
    from staa.generator.training import generator_loss
    from staa.models.victim import load_victim

    recs, victim = tiny
    model = load_victim(victim).model.eval().requires_grad_(False)
    x = torch.stack([AudioDataset(recs[:4], list(EMOTIONS), clip_seconds=0.5)[i][0] for i in range(4)])
    torch.manual_seed(0)
    gen = STAAGenerator(_cfg().generator_config())
    losses = {}
    for p in (0.0, 1.0):
        torch.manual_seed(1)
        loss, parts = generator_loss(_cfg(diversity=p), gen, [model], x)
        gen.zero_grad()
        loss.backward()
        losses[p] = parts["adv"]
        assert any(w.grad is not None and w.grad.abs().sum() > 0 for w in gen.parameters())
    assert losses[0.0] != losses[1.0]  # the surrogate judged another view of the same adversarial clips
    with pytest.raises(ValueError, match="diversity"):
        AttackTrainConfig(diversity=1.5)


def test_defense_aware_training_measures_the_defended_surrogate(tiny, tmp_path):
    recs, victim = tiny
    report = train_generator(
        _cfg(epochs=1, defenses=["mp3:32", "resample:8000"]), [victim], recs, tmp_path / "aware", progress=False
    )
    h = report["history"][0]
    assert set(h["val_defended_fooling_rate"]) == {"mp3:32", "resample:8000"}
    assert all(0.0 <= r <= 1.0 for r in h["val_defended_fooling_rate"].values())
    assert h["val_score"] == pytest.approx(
        0.5 * (h["val_mean_fooling_rate"] + sum(h["val_defended_fooling_rate"].values()) / 2)
    )
    with pytest.raises(ValueError, match="unknown defense"):
        _cfg(defenses=["mp4:32"])


def test_a_conditional_generator_is_told_its_surrogates_classes_never_the_victims(tiny, tmp_path):
    import shutil

    recs, victim = tiny
    surrogate = tmp_path / "surrogate.pt"
    shutil.copy(victim, surrogate)
    train_generator(_cfg(epochs=1, conditional=True), [surrogate], recs, tmp_path / "cond", progress=False)
    gen = load_generator(tmp_path / "cond" / "best.pt")
    assert gen.conditional and gen.cfg.num_classes == len(EMOTIONS)
    x = 0.1 * torch.randn(3, 8000, generator=torch.Generator().manual_seed(0))

    class Says(torch.nn.Module):  # a victim or surrogate whose prediction is always one class
        def __init__(self, k):
            super().__init__()
            self.k = k

        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((len(x),), self.k), len(EMOTIONS)).float()

    attack = STAA(Says(0), gen, classifier=Says(2))
    told_two, told_zero = gen(x, torch.full((3,), 2)), gen(x, torch.zeros(3, dtype=torch.long))
    assert (told_two - told_zero).abs().max() > 1e-3
    # the attack runs a traced copy, equal to the generator up to float rounding, far below the classes' difference
    same = lambda a, b: torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    same(attack(x), told_two)  # the surrogate's class, not the victim's
    assert attack.passes == 0  # the victim is never queried
    same(attack(x, torch.zeros(3, dtype=torch.long)), told_zero)  # given labels win
    loaded = STAA.from_checkpoint(tmp_path / "cond" / "best.pt")
    same(loaded(x), gen(x, loaded.classifier(x).argmax(1)))
    with pytest.raises(ValueError, match="needs a classifier"):
        STAA(None, gen)
    surrogate.unlink()
    with pytest.raises(CheckpointError, match="surrogate.pt is not there"):
        STAA.from_checkpoint(tmp_path / "cond" / "best.pt")


def test_a_run_can_start_from_a_trained_generator(tiny, tmp_path):
    recs, victim = tiny
    train_generator(_cfg(epochs=1), [victim], recs, tmp_path / "plain", progress=False)
    start = load_generator(tmp_path / "plain" / "best.pt").state_dict()
    # a learning rate too small to move a weight: what comes out is what went in, not a fresh initialisation
    train_generator(
        _cfg(epochs=1, lr=1e-12, seed=5, init=str(tmp_path / "plain" / "best.pt")),
        [victim],
        recs,
        tmp_path / "warm",
        progress=False,
    )
    warm = load_generator(tmp_path / "warm" / "best.pt").state_dict()
    assert all(torch.allclose(warm[k], start[k], atol=1e-9) for k in start)
    train_generator(_cfg(epochs=1, lr=1e-12, seed=5), [victim], recs, tmp_path / "cold", progress=False)
    cold = load_generator(tmp_path / "cold" / "best.pt").state_dict()
    assert not all(torch.allclose(cold[k], start[k], atol=1e-3) for k in start)
    with pytest.raises(CheckpointError, match="plain/best.pt: cannot start from this generator, its shape differs"):
        train_generator(
            _cfg(epochs=1, conditional=True, init=str(tmp_path / "plain" / "best.pt")),
            [victim],
            recs,
            tmp_path / "cond",
            progress=False,
        )
    with pytest.raises(CheckpointError, match="nothing.pt"):
        train_generator(
            _cfg(epochs=1, init=str(tmp_path / "nothing.pt")), [victim], recs, tmp_path / "none", progress=False
        )


def test_a_collapsed_generator_is_told_apart_from_a_working_one():
    from staa.generator.training import collapsed

    epoch = lambda fooling, l0: {"val_mean_fooling_rate": fooling, "val_l0_ratio": l0}
    assert collapsed({"history": [epoch(0.0, 0.1), epoch(0.01, 0.2)]})  # never fooled anything
    assert collapsed({"history": [epoch(0.6, 0.1), epoch(0.0, 0.0)]})  # its mask closed
    assert not collapsed({"history": [epoch(0.0, 0.1), epoch(0.35, 0.15)]})


def test_the_feature_loss_reads_the_middle_convolution_and_its_gradient_reaches_the_generator(tiny):
    from staa.generator import STAAGenerator
    from staa.generator.feature_loss import FeatureTaps, middle_layer
    from staa.generator.training import generator_loss
    from staa.models.victim import load_victim

    recs, victim = tiny
    model = load_victim(victim).model.eval().requires_grad_(False)
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert middle_layer(model) == convs[len(convs) // 2] and len(convs) > 2
    x = torch.stack([AudioDataset(recs[:4], list(EMOTIONS), clip_seconds=0.5)[i][0] for i in range(4)])
    torch.manual_seed(0)
    gen = STAAGenerator(_cfg().generator_config())
    torch.manual_seed(1)
    plain, plain_parts = generator_loss(_cfg(), gen, [model], x)
    torch.manual_seed(1)
    loss, parts = generator_loss(_cfg(w_feat=2.0), gen, [model], x)
    assert "feat" not in plain_parts and -1.0 <= parts["feat"] < 1.0  # the perturbation moved the features
    assert loss.item() == pytest.approx(plain.item() + 2.0 * parts["feat"], abs=1e-5)
    gen.zero_grad()
    (loss - plain).backward()  # the feature term alone
    assert any(w.grad is not None and w.grad.abs().sum() > 0 for w in gen.parameters())
    assert not any(m._forward_hooks for m in model.modules())  # the taps are gone after the loss
    # under input diversity the clean and adversarial clip share one view: no perturbation, features alike
    silent = STAAGenerator(_cfg(eps_schedule=[[0, 1e-12]]).generator_config())
    _, parts = generator_loss(_cfg(w_feat=1.0, diversity=1.0), silent, [model], x)
    assert parts["feat"] == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="no layer 'nope'"):
        generator_loss(_cfg(w_feat=1.0, feature_layer="nope"), gen, [model], x)
    with pytest.raises(ValueError, match="w_feat must be >= 0"):
        AttackTrainConfig(w_feat=-1.0)
    with FeatureTaps([model], convs[0]) as taps, pytest.raises(RuntimeError, match="every model must run"):
        taps.outputs()


def test_the_transfer_recipe_drops_the_sparsity_loss_and_keeps_its_best_epoch_however_dense(tiny, tmp_path, caplog):
    from staa.generator import STAAGenerator
    from staa.generator.recipes import recipe
    from staa.generator.training import generator_loss
    from staa.models.victim import load_victim

    recs, victim = tiny
    model = load_victim(victim).model.eval().requires_grad_(False)
    x = torch.stack([AudioDataset(recs[:4], list(EMOTIONS), clip_seconds=0.5)[i][0] for i in range(4)])
    keys = ("w_spa", "spa_target", "max_l0_ratio")
    cfgs = {name: _cfg(**{k: v for k, v in recipe(name).items() if k in keys}) for name in RECIPES}
    torch.manual_seed(0)
    gen = STAAGenerator(cfgs["default"].generator_config())
    totals = {}
    for name in ("default", "transfer"):
        torch.manual_seed(1)
        totals[name], parts = generator_loss(cfgs[name], gen, [model], x)
    w, target = cfgs["default"].w_spa, cfgs["default"].spa_target
    assert parts["spa"] > target  # an untrained mask is dense: over the default's sparsity budget
    assert (totals["default"] - totals["transfer"]).item() == pytest.approx(w * (parts["spa"] - target), rel=1e-4)
    # the untrained generators here stay dense: the default finds no epoch within its l0 budget, the transfer
    # recipe keeps the best one
    for name in ("default", "transfer"):
        caplog.clear()
        report = train_generator(
            _cfg(**cfgs[name].__dict__ | {"epochs": 2}), [victim], recs, tmp_path / name, progress=False
        )
        kept = report["history"][report["best_epoch"] - 1]["val_l0_ratio"]
        assert kept > 0.25 and ("no epoch met the l0 budget" in caplog.text) == (name == "default")


def test_the_best_epoch_is_the_first_top_score_at_the_last_eps_within_the_l0_budget():
    from staa.generator.training import best_epoch

    def h(epoch, eps, fooling, l0=0.2):
        return {"epoch": epoch, "eps": eps, "val_mean_fooling_rate": fooling, "val_l0_ratio": l0}

    history = [h(1, 0.01, 0.95), h(2, 0.002, 0.5), h(3, 0.002, 0.6), h(4, 0.002, 0.6), h(5, 0.002, 0.7, l0=0.3)]
    # epoch 1 fooled more at its larger budget, epoch 5 is over the l0 budget, and epoch 4 only ties epoch 3
    assert best_epoch(history, 0.25) == 3
    assert best_epoch(history, 0.3) == 5
    assert best_epoch(history[:1] + [h(2, 0.002, 0.5, l0=0.4)], 0.25) == 2  # none within budget: the last epoch
