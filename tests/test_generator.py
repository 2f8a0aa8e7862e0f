from dataclasses import replace

import pytest
import torch

from staa.generator.losses import adversarial_loss, cw_margin, magnitude_loss, quality_loss, sparsity_loss
from staa.generator.network import PRESETS, GeneratorConfig, STAAGenerator

TINY = GeneratorConfig(channels=4, levels=3, eps=0.03)


@pytest.mark.parametrize("length", [1, 255, 16_001, 48_000])
@pytest.mark.parametrize("fold", [1, 4])
def test_hard_mask_bounded_magnitude_and_same_length(length, fold):
    torch.manual_seed(0)
    gen = STAAGenerator(replace(TINY, fold=fold)).eval()
    x = 0.2 * torch.randn(2, length)
    v, m, m_soft = gen.perturbation(x)
    assert v.shape == m.shape == m_soft.shape == x.shape
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert v.abs().max() <= 0.03 + 1e-7
    x_adv = gen(x)
    assert x_adv.shape == x.shape and x_adv.abs().max() <= 1.0
    assert torch.allclose(x_adv, (x + v * m).clamp(-1, 1))
    assert (x_adv - x).abs().max() <= 0.03 + 1e-6


def test_a_folded_generator_perturbs_each_sample_from_its_own_neighbourhood():
    """Folding (space-to-depth) must put each output sample back where its input came from: a wrong
    fold/unfold order would make the perturbation at t depend most on input samples far from t."""
    torch.manual_seed(0)
    gen = STAAGenerator(replace(TINY, fold=4)).eval()
    x = (0.2 * torch.randn(1, 4096)).requires_grad_()
    for t in (5, 2050, 4090):
        (grad,) = torch.autograd.grad(gen.perturbation(x)[0][0, t], x)
        assert abs(grad[0].abs().argmax().item() - t) < 4 * TINY.kernel, t


def test_the_magnitude_gain_sharpens_the_tanh_within_the_same_bound():
    torch.manual_seed(0)
    plain = STAAGenerator(TINY).eval()
    sharp = STAAGenerator(replace(TINY, magnitude_gain=4.0)).eval()
    sharp.load_state_dict(plain.state_dict())
    x = 0.2 * torch.randn(2, 4000)
    v1, v4 = plain.perturbation(x)[0], sharp.perturbation(x)[0]
    assert torch.allclose(v4, 0.03 * torch.tanh(4 * torch.atanh(v1 / 0.03)), atol=1e-6)
    assert v4.abs().max() <= 0.03 and v4.abs().mean() > v1.abs().mean()
    with pytest.raises(ValueError, match="invalid generator shape"):
        GeneratorConfig(magnitude_gain=0.0)


def test_training_mask_mixes_soft_and_hard_values():
    torch.manual_seed(0)
    gen = STAAGenerator(TINY).train()
    x = 0.2 * torch.randn(4, 4096)
    _, m, m_soft = gen.perturbation(x)
    soft = torch.isclose(m, m_soft)
    hard = m == (m_soft >= 0.5).float()
    assert (soft | hard).all()
    share_soft = (soft & ~hard).float().mean().item()
    assert 0.4 < share_soft < 0.6  # about half the elements keep the soft value


def test_straight_through_mask_trains_on_the_test_time_output():
    """Straight-through: the training forward equals the eval forward (hard mask), yet the mask still gets a gradient."""
    torch.manual_seed(0)
    gen = STAAGenerator(GeneratorConfig(channels=4, levels=3, train_mask="straight_through"))
    x = 0.2 * torch.randn(2, 4096)
    v, m, m_soft = gen.train().perturbation(x)
    assert torch.equal(m, (m_soft >= 0.5).float())
    assert torch.allclose(gen.train()(x), gen.eval()(x))
    m.sum().backward()
    assert gen.positions.out.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="train_mask"):
        GeneratorConfig(train_mask="sometimes")


def test_the_untrained_mask_starts_on_for_every_seed():
    # An all-off hard mask passes no gradient to the magnitudes: a run that starts there never learns.
    x = torch.stack([torch.sin(torch.arange(16_000) * f / 16_000 * 6.283) * 0.3 for f in (220, 440, 880)])
    for seed in range(6):
        torch.manual_seed(seed)
        _, _, m_soft = STAAGenerator(PRESETS["cpu"]).perturbation(x)
        assert (m_soft >= 0.5).float().mean() > 0.9, seed


def test_presets_and_bad_settings():
    assert PRESETS["paper"].widths() == [32, 64, 128, 256, 512, 1024]
    with pytest.raises(ValueError, match="eps must be > 0"):
        GeneratorConfig(eps=0)
    gen = STAAGenerator(TINY)
    with pytest.raises(ValueError, match="eps must be > 0"):
        gen.set_eps(-0.1)
    for bad in (torch.zeros(2, 1, 100), torch.zeros(2, 0)):
        with pytest.raises(ValueError, match=r"expected waveforms \[batch, samples\]"):
            gen(bad)
    with pytest.raises(ValueError, match="NaN or Inf"):
        gen(torch.full((1, 100), float("nan")))


def test_cw_margin_untargeted_and_targeted():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0]])
    y = torch.tensor([0, 1])
    assert torch.allclose(cw_margin(logits, y, kappa=10.0), torch.tensor([2.0, -3.0]))
    assert torch.allclose(cw_margin(logits, y, kappa=1.0), torch.tensor([2.0, -1.0]))  # floored at -kappa
    assert torch.allclose(cw_margin(logits, y), torch.tensor([2.0, 0.0]))
    assert torch.allclose(cw_margin(logits, torch.tensor([2, 2]), targeted=True, kappa=10.0), torch.tensor([3.0, -3.0]))


def test_each_loss_decreases_on_a_tiny_overfit_run():
    """Optimising the generator on one batch against a fixed linear victim lowers every loss term."""
    torch.manual_seed(0)
    victim = torch.nn.Sequential(torch.nn.Linear(512, 3)).requires_grad_(False)
    x = 0.3 * torch.randn(4, 512)
    y = victim(x).argmax(1)
    results = {}
    for name, fn in {
        "adv": lambda v, m, ms: adversarial_loss(victim((x + v * m).clamp(-1, 1)), y, kappa=5.0),
        "mag": lambda v, m, ms: magnitude_loss(v),
        "spa": lambda v, m, ms: sparsity_loss(m),
        "qua": lambda v, m, ms: quality_loss(ms),
    }.items():
        torch.manual_seed(1)
        gen = STAAGenerator(GeneratorConfig(channels=4, levels=2, eps=0.3)).train()
        opt = torch.optim.Adam(gen.parameters(), lr=3e-3)
        losses = []
        for _ in range(80):
            loss = fn(*gen.perturbation(x))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        results[name] = (losses[0], sum(losses[-5:]) / 5)
    for name, (first, last) in results.items():
        assert last < 0.8 * first or last < first - 0.5, (name, first, last)


def test_sparsity_warmup_leaves_the_sparsity_loss_out_of_early_epochs():
    from staa.generator.training import AttackTrainConfig, generator_loss

    victim = torch.nn.Linear(256, 3).requires_grad_(False)
    x = 0.3 * torch.randn(2, 256)
    cfg = AttackTrainConfig(
        spa_warmup_epochs=1, w_spa=1.0, spa_target=0.0, w_qua=0.0, generator={"channels": 4, "levels": 2}
    )
    gen = STAAGenerator(cfg.generator_config()).eval()  # eval: the same hard mask on every call
    early, parts = generator_loss(cfg, gen, [victim], x, epoch=0)
    late, _ = generator_loss(cfg, gen, [victim], x, epoch=1)
    assert parts["spa"] > 0
    assert torch.isclose(late - early, torch.tensor(parts["spa"]), atol=1e-5)


def test_a_sparsity_budget_penalises_only_the_share_above_it():
    from staa.generator.training import AttackTrainConfig, generator_loss

    torch.manual_seed(0)
    victim = torch.nn.Linear(256, 3).requires_grad_(False)
    x = 0.3 * torch.randn(2, 256)
    losses = {}
    for target in (0.0, 0.99, 0.1):
        cfg = AttackTrainConfig(w_spa=2.0, w_qua=0.0, spa_target=target, generator={"channels": 4, "levels": 2})
        torch.manual_seed(1)
        gen = STAAGenerator(cfg.generator_config()).eval()
        torch.nn.init.zeros_(gen.positions.out.bias)  # a partly-on mask (the default init starts it on)
        losses[target], parts = generator_loss(cfg, gen, [victim], x)
    share = parts["spa"]
    assert 0.1 < share < 0.99
    assert torch.isclose(
        losses[0.0] - losses[0.99], torch.tensor(2.0 * share), atol=1e-5
    )  # under the budget: no penalty
    assert torch.isclose(losses[0.1] - losses[0.99], torch.tensor(2.0 * (share - 0.1)), atol=1e-5)
    with pytest.raises(ValueError, match="spa_target"):
        AttackTrainConfig(spa_target=1.0)


class _SignOfMean(torch.nn.Module):
    """Class = the sign of the clip's mean: flipped by a constant push of eps the other way, once the class is
    known. The generator's GroupNorm removes each clip's offset from its features: unconditioned, it fooled about
    a quarter of fresh clips here (a push one way would fool half)."""

    def forward(self, x):
        s = 100 * x.mean(dim=1)
        return torch.stack([s, -s], dim=1)


def _offset_clips(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.05 * torch.randn(n, 512, generator=g) + 0.01 * (torch.randint(0, 2, (n, 1), generator=g) * 2 - 1)


def _fooling_after_training(conditional: bool) -> float:
    torch.manual_seed(0)
    victim = _SignOfMean()
    gen = STAAGenerator(
        GeneratorConfig(
            channels=4, levels=2, eps=0.03, train_mask="straight_through", num_classes=2 if conditional else 0
        )
    ).train()
    opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    x = _offset_clips(64, 1)
    y = victim(x).argmax(1)
    for _ in range(60):
        v, m, _ = gen.perturbation(x, y if conditional else None)
        loss = adversarial_loss(victim(x + v * m), y, kappa=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    fresh = _offset_clips(256, 2)
    clean = victim(fresh).argmax(1)
    with torch.no_grad():
        adv = victim(gen.eval()(fresh, clean if conditional else None)).argmax(1)
    return (adv != clean).float().mean().item()


def test_a_conditional_generator_fools_both_classes_where_an_unconditional_one_cannot():
    plain, conditional = _fooling_after_training(False), _fooling_after_training(True)
    assert plain < 0.6 and conditional > 0.95, (plain, conditional)


def test_class_inputs_are_checked():
    x = 0.1 * torch.randn(2, 300)
    with pytest.raises(ValueError, match="unconditional"):
        STAAGenerator(TINY)(x, torch.tensor([0, 1]))
    gen = STAAGenerator(GeneratorConfig(channels=4, levels=3, num_classes=4)).eval()
    with pytest.raises(ValueError, match="class-conditional"):
        gen(x)
    for bad in (torch.tensor([0, 4]), torch.tensor([0]), torch.tensor([0.0, 1.0])):
        with pytest.raises(ValueError, match=r"classes must be 2 integers in \[0, 4\)"):
            gen(x, bad)
    assert not torch.equal(gen(x, torch.tensor([0, 0])), gen(x, torch.tensor([3, 3])))
    with pytest.raises(ValueError, match="num_classes"):
        GeneratorConfig(num_classes=1)
