import pytest
import torch
from torch import nn

from staa.attacks import PGD, build_attack, parse_attack
from staa.attacks.apgd import APGD, APGDT, checkpoints, dlr_loss
from staa.attacks.square import Square, margin
from staa.attacks.standard import Standard
from tests.conftest import fit_tone_model as _fit


@pytest.fixture(scope="module")
def fitted():
    return _fit(4)


def _success(model, x, adv) -> float:
    with torch.no_grad():
        return float((model(adv).argmax(1) != model(x).argmax(1)).float().mean())


class Rounded(nn.Module):
    """A gradient-masked victim: it rounds its input to 8 bits, so the waveform gradient is zero everywhere."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 127) / 127)


def test_checkpoints_follow_the_papers_schedule():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]  # AutoAttack's own checkpoints for 100 steps
    assert checkpoints(10) == [3, 5, 6, 7, 8, 9, 10]


def test_dlr_is_invariant_to_shifting_and_scaling_the_logits():
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    y, t = logits.argmax(1), logits.argsort(1)[:, -2]
    for f in (dlr_loss, lambda z, y: dlr_loss(z, y, t)):
        assert torch.allclose(f(logits, y), f(7.0 * logits - 3.0, y), atol=1e-5)
    assert (dlr_loss(logits, y) <= 0).all()  # the clean prediction is right: the loss is not yet positive


def test_apgd_reaches_pgd100s_success_with_fewer_victim_passes(fitted):
    model, x = fitted
    eps = 1e-4  # this victim is nearly linear: at 2e-4 every attack fools every clip, at 2e-5 none
    pgd10, pgd100 = (_success(model, x, PGD(model, eps=eps, steps=s)(x)) for s in (10, 100))
    apgd = APGD(model, eps=eps, steps=40)
    got = _success(model, x, apgd(x))
    assert pgd10 < 1.0  # a budget where the attacks differ
    assert got >= pgd100 > 0 and apgd.passes <= 41 < 100


def test_apgd_t_targets_the_next_classes_and_falls_back_to_ce_below_four():
    for n_classes in (3, 4):
        model, x = _fit(n_classes)
        attack = APGDT(model, eps=0.01, steps=20)
        adv = attack(x)
        assert _success(model, x, adv) > 0.5 and (adv - x).abs().max() <= 0.01 + 1e-6
        assert attack.passes <= (n_classes - 1) * 21  # at most C - 1 targets, each on the clips still unfooled


def test_square_fools_without_gradients_where_gradient_attacks_see_none(fitted):
    model, x = fitted
    masked = Rounded(model).eval()
    x_adv = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(masked(x_adv), masked(x).argmax(1)), x_adv)
    assert grad.abs().max() == 0  # the masking is real
    apgd = APGD(masked, eps=0.01, steps=20)
    start = torch.max(torch.min(x + apgd._start(x, 0), (x + 0.01).clamp(-1, 1)), (x - 0.01).clamp(-1, 1))
    # no gradient step moves a clip beyond its random start: whatever the start happens to flip on a machine's
    # floating point is all that APGD finds
    assert torch.equal(apgd(x), start)
    square = Square(masked, eps=0.01, queries=300)
    adv = square(x)
    assert _success(masked, x, adv) >= 0.5 and (adv - x).abs().max() <= 0.01 + 1e-6
    with torch.no_grad():  # it keeps only what lowers the margin: no clip ends worse than its start
        assert (margin(masked(adv), masked(x).argmax(1)) <= margin(masked(x), masked(x).argmax(1))).all()


def test_standard_is_the_worst_case_of_its_attacks(fitted):
    model, x = fitted
    eps = 0.003
    parts = [APGD(model, eps=eps, steps=20), APGDT(model, eps=eps, steps=20), Square(model, eps=eps, queries=100)]
    each = [_success(model, x, a(x)) for a in parts]
    suite = Standard(model, eps=eps, steps=20, queries=100)
    adv = suite(x)
    total = _success(model, x, adv)
    assert total >= max(each) and sum(suite.per_attack.values()) == round(total * len(x))
    assert (adv - x).abs().max() <= eps + 1e-6


def test_standard_is_a_spec_and_adaptive_through_a_defense(fitted):
    from defenses import parse_defense

    model, x = fitted
    spec = parse_attack("standard:steps=5:queries=20")
    assert spec.adaptive and spec.params == {"steps": 5, "queries": 20}
    attack = spec.build(model, eps=0.01, defense=parse_defense("noise:30"), sample_rate=16_000)
    assert attack.name == "standard[noise:30]" and attack.attacks[0].eot == 4  # a random defense: EOT
    assert spec.build(model, eps=0.01, defense=parse_defense("quantize:8"), sample_rate=16_000).attacks[0].eot == 1
    for bad in ("apgd:loss=mse", "apgd_t:n_targets=0", "square:queries=0", "square:p_init=2", "standard:eot=0"):
        with pytest.raises(ValueError):
            parse_attack(bad)
    assert build_attack("apgd_t:steps=3", model)(x).shape == x.shape
