import csv

import pytest
import torch

from staa.attacks import CW, FGSM, PGD, STAA, SparsePGD, build_attack
from staa.attacks.runner import run_attack, transfer_matrix
from staa.attacks.sparse_pgd import keep_top_k
from staa.datasets import AudioDataset
from staa.generator import load_generator
from staa.generator.network import GeneratorConfig, STAAGenerator
from staa.generator.training import AttackTrainConfig, generator_loss
from staa.io.checkpoint import CheckpointError, save_checkpoint
from staa.metrics.perturbation import distortion_db, l0_count, l0_ratio, linf, snr_db
from staa.models import build_model
from tests.conftest import tone, write_wav


@pytest.fixture(scope="module")
def victim_and_batch():
    """A small victim fitted to tell four tones apart, so that its loss has a real gradient to climb."""
    torch.manual_seed(0)
    model = build_model("mel_cnn", 4, width=4)
    x = torch.stack([torch.from_numpy(tone(seconds=0.5, freq=f, seed=i)) for i, f in enumerate([150, 300, 600, 1200])])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), torch.arange(4))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), x


def _loss(model, x, y):
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(x), y).item()


def _overfit_generator(model, x, steps=40):
    torch.manual_seed(0)
    gen = STAAGenerator(GeneratorConfig(channels=4, levels=3, eps=0.03)).train()
    cfg = AttackTrainConfig(kappa=5.0, w_spa=0.0)
    opt = torch.optim.Adam(gen.parameters(), lr=5e-3)
    for _ in range(steps):
        loss, _ = generator_loss(cfg, gen, [model], x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return gen.eval()


def test_every_attack_raises_the_victims_loss(victim_and_batch):
    model, x = victim_and_batch
    y = model(x).argmax(1).detach()
    before = _loss(model, x, y)
    attacks = [
        FGSM(model, eps=0.03),
        PGD(model, eps=0.03, steps=5),
        CW(model, steps=30, c=10.0, lr=0.01),
        SparsePGD(model, eps=0.03, l0_ratio=0.2, steps=5),
        STAA(model, _overfit_generator(model, x)),
    ]
    for attack in attacks:
        x_adv = attack(x, y)
        assert x_adv.shape == x.shape and x_adv.abs().max() <= 1
        assert _loss(model, x_adv, y) > before + 1e-3, attack.name
    assert (linf(x, attacks[1](x, y)) <= 0.03 + 1e-6).all()
    assert (l0_count(x, attacks[3](x, y)) <= int(0.2 * x.shape[1])).all()


def test_mifgsm_without_momentum_is_i_fgsm_and_its_momentum_and_diversity_change_the_path(victim_and_batch):
    from staa.attacks import MIFGSM

    model, x = victim_and_batch
    y = model(x).argmax(1).detach()
    plain = MIFGSM(model, eps=0.01, steps=5, decay=0.0)
    i_fgsm = PGD(model, eps=0.01, steps=5, alpha=0.01 / 5, random_start=False)  # I-FGSM: PGD from x, step eps/steps
    assert torch.allclose(plain(x, y), i_fgsm(x, y)) and plain.passes == 5
    runs = {}
    for key, kw in {"momentum": {}, "diverse": {"diversity": 1.0, "seed": 1}, "other_seed": {"diversity": 1.0}}.items():
        attack = MIFGSM(model, eps=0.01, steps=5, **kw)
        runs[key] = attack(x, y)
        assert (linf(x, runs[key]) <= 0.01 + 1e-6).all() and _loss(model, runs[key], y) > _loss(model, x, y)
        assert torch.equal(runs[key], attack(x, y))  # seeded: the same draws on every call
    assert not torch.allclose(runs["momentum"], plain(x, y)) and not torch.equal(runs["diverse"], runs["other_seed"])
    from staa.datasets.augment import resample_shift

    stretched = resample_shift(x, torch.Generator().manual_seed(0))
    assert stretched.shape == x.shape and not torch.equal(stretched, x)


def test_targeted_attack_moves_towards_the_target(victim_and_batch):
    model, x = victim_and_batch
    target = torch.full((4,), 2)
    before = _loss(model, x, target)
    x_adv = PGD(model, eps=0.03, steps=5, targeted=True)(x, target)
    assert _loss(model, x_adv, target) < before
    with pytest.raises(ValueError, match="targeted attack needs target labels"):
        PGD(model, targeted=True)(x)


def test_bad_inputs_and_settings(victim_and_batch, tmp_path):
    model, x = victim_and_batch
    for bad in (x[0], x[None], torch.full_like(x, float("nan"))):
        with pytest.raises(ValueError, match="expected waveforms|NaN or Inf"):
            PGD(model)(bad)
    for make in (
        lambda: FGSM(model, eps=0),
        lambda: PGD(model, eps=-1),
        lambda: SparsePGD(model, l0_ratio=0),
        lambda: build_attack("staa", model),
        lambda: build_attack("jsma", model),
    ):
        with pytest.raises(ValueError):
            make()
    with pytest.raises(ValueError, match="eps_schedule needs eps > 0"):
        AttackTrainConfig(eps_schedule=[[0, 0.0]])
    save_checkpoint(tmp_path / "victim.pt", "victim", {"state_dict": {}})
    with pytest.raises(CheckpointError, match="is a staa-ser/victim checkpoint, expected staa-ser/generator"):
        load_generator(tmp_path / "victim.pt")


def test_staa_runs_a_traced_copy_of_its_generator_and_still_checks_what_the_copy_cannot(victim_and_batch):
    model, _ = victim_and_batch
    torch.manual_seed(0)
    gen = STAAGenerator(GeneratorConfig(channels=4, levels=3, fold=4, num_classes=4, eps=0.03)).eval()
    attack = STAA(model, gen, classifier=model)
    g = torch.Generator().manual_seed(1)
    for batch, length in ((4, 16_001), (2, 16_001), (3, 4_001)):  # traced on the first batch of each length
        x = 0.1 * torch.randn(batch, length, generator=g)
        y = torch.randint(0, 4, (batch,), generator=g)
        with torch.no_grad():
            # the copy's oneDNN kernels may round differently from the eager ones at another batch size (3e-8 seen);
            # a wrong class moves the output by ~2e-2
            torch.testing.assert_close(attack(x, y), gen(x, y), rtol=0, atol=1e-6)
            torch.testing.assert_close(attack(x), gen(x, model(x).argmax(1)), rtol=0, atol=1e-6)
    assert attack.fast_generator.traced
    with pytest.raises(ValueError, match="NaN or Inf"):
        attack(torch.full((2, 4_001), float("nan")))
    with pytest.raises(ValueError, match="classes must be"):
        attack(x, torch.full((3,), 7))


def test_keep_top_k():
    d = torch.tensor([[0.1, -0.5, 0.2, 0.05]])
    assert torch.equal(keep_top_k(d, 2), torch.tensor([[0.0, -0.5, 0.2, 0.0]]))


def test_perturbation_metrics_known_values():
    clean = torch.tensor([[0.5, -0.25, 0.0, 0.1]])
    adv = clean + torch.tensor([[0.0, 0.05, 0.0, -0.005]])
    assert l0_count(clean, adv).item() == 2 and l0_ratio(clean, adv).item() == 0.5
    assert linf(clean, adv).item() == pytest.approx(0.05)
    assert distortion_db(clean, adv).item() == pytest.approx(20.0, abs=1e-4)  # 20 log10(0.5 / 0.05)
    noise = torch.randn(1, 16_000, generator=torch.Generator().manual_seed(0))
    x = torch.sin(torch.arange(16_000) * 0.05)[None]
    scaled = noise * x.norm() / noise.norm() / 10.0  # 20 dB below the signal
    assert snr_db(x, x + scaled).item() == pytest.approx(20.0, abs=0.01)
    assert distortion_db(clean, clean).item() == float("inf")


def test_run_attack_writes_clips_and_csv_and_never_touches_inputs(victim_and_batch, tmp_path):
    model, x = victim_and_batch
    from staa.datasets import Record

    recs = []
    for i in range(4):
        path = write_wav(tmp_path / "data" / f"c{i}.wav", x[i].numpy(), subtype="FLOAT")
        recs.append(Record(str(path), ["neutral", "angry", "happy", "sad"][i], "s", "test"))
    before = {r.path: open(r.path, "rb").read() for r in recs}
    ds = AudioDataset(recs, ["neutral", "angry", "happy", "sad"], clip_seconds=0.5)
    summary = run_attack(PGD(model, eps=0.03, steps=3), model, ds, tmp_path / "out", batch_size=2, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "out" / "clips.csv")))
    assert len(rows) == 4 and len(list((tmp_path / "out" / "adv").glob("*.wav"))) == 4
    assert summary["fooling_rate"] == sum(r["success"] == "True" for r in rows) / 4
    assert all(float(r["linf"]) <= 0.03 + 1e-6 for r in rows)
    assert before == {r.path: open(r.path, "rb").read() for r in recs}
    gen = _overfit_generator(model, x, steps=5)
    table = transfer_matrix(
        {"g": STAA(None, gen)}, {"a": model, "b": build_model("mel_cnn", 4, width=4).eval()}, ds, progress=False
    )
    assert set(table["fooling_rate"]["g"]) == {"a", "b"} and table["n"] == 4
    made = STAA(None, gen)(torch.stack([ds[i][0] for i in range(4)]))
    assert table["l0_ratio"]["g"] == pytest.approx(
        float(l0_ratio(torch.stack([ds[i][0] for i in range(4)]), made).mean())
    )
    assert table["seconds_per_clip"]["g"] > 0 and table["snr_db"]["g"] > 0


def test_adaptive_pgd_raises_the_defended_victims_loss(victim_and_batch):
    from defenses import parse_defense
    from staa.attacks import AdaptivePGD, Defended

    model, x = victim_and_batch
    y = torch.arange(4)
    for spec in ["quantize:8", "noise:30", "lowpass:4000"]:  # BPDA, EOT, and a real gradient
        defense = parse_defense(spec)
        attack = AdaptivePGD(model, defense, 16_000, eps=0.03, steps=5, eot=2)
        assert attack.eot == (2 if defense.random else 1)
        x_adv = attack(x, y)
        defended = Defended(model, parse_defense(spec), 16_000)
        assert (x_adv - x).abs().max() <= 0.03 + 1e-6
        assert _loss(defended, x_adv, y) > _loss(defended, x, y) + 0.1, spec


def test_an_adaptive_attack_leaves_the_victim_in_eval_mode(victim_and_batch):
    from defenses import parse_defense
    from staa.attacks import AdaptivePGD

    model, x = victim_and_batch
    model.eval()
    AdaptivePGD(model, parse_defense("quantize:8"), 16_000, steps=1)(x)
    assert not model.training and not any(m.training for m in model.modules())


def test_run_attack_leaves_near_silent_clips_out_and_counts_them(tmp_path):
    import soundfile as sf

    from staa.datasets.records import Record
    from tests.conftest import fit_tone_model

    model, x = fit_tone_model(2)
    records = []
    for i, clip in enumerate([x[0], x[1], 1e-6 * x[0], 0 * x[1]]):
        sf.write(str(tmp_path / f"{i}.wav"), clip.numpy(), 16_000, subtype="FLOAT")
        records.append(Record(str(tmp_path / f"{i}.wav"), ["low", "high"][i % 2], "s", "test"))
    summary = run_attack(PGD(model, eps=1e-3, steps=5), model, AudioDataset(records, ["low", "high"]), tmp_path / "o")
    assert (summary["n"], summary["n_silent"]) == (2, 2)
    with open(tmp_path / "o" / "clips.csv", newline="") as fh:
        assert [r["path"] for r in csv.DictReader(fh)] == [records[0].path, records[1].path]


def test_robust_correct_counts_a_clip_only_if_right_before_and_after(tmp_path):
    import soundfile as sf

    from staa.attacks.runner import robust_correct
    from staa.datasets.records import Record
    from tests.conftest import fit_tone_model

    model, x = fit_tone_model(2)
    with torch.no_grad():
        pred = model(x).argmax(1).tolist()
    records = []
    for i, clip in enumerate(x):  # 8 clips; the first 6 labelled other than the victim says
        sf.write(str(tmp_path / f"{i}.wav"), clip.numpy(), 16_000, subtype="FLOAT")
        label = pred[i] if i >= 6 else 1 - pred[i]
        records.append(Record(str(tmp_path / f"{i}.wav"), ["low", "high"][label], "s", "test"))
    data = AudioDataset(records, ["low", "high"], clip_seconds=None)  # the clips as the victim saw them above
    assert robust_correct(PGD(model, eps=1e-7, steps=1), model, data).tolist() == [False] * 6 + [True] * 2
    # an attack run against the true label moves the 2 right clips off it; the 6 wrong ones never count
    assert not robust_correct(PGD(model, eps=1e-3, steps=10, random_start=False), model, data).any()
