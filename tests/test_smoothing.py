"""Randomized smoothing: the certificate on a model whose answer is known, and noise training."""

import math

import pytest
import torch
from scipy.stats import norm

from staa.metrics.intervals import clopper_pearson_lower
from staa.models.smoothing import ABSTAIN, Smoothed, certified_accuracy, linf_equivalent

T = 64


class Linear(torch.nn.Module):
    """Two classes split by the hyperplane w.x = 0: under Gaussian noise its smoothed model is itself, and the exact
    robust l2 radius of a clip is its distance |w.x| / ||w|| to the plane (Cohen et al., 2019, the bound is tight)."""

    def __init__(self):
        super().__init__()
        self.w = torch.linspace(-1, 1, T) + 0.3

    def forward(self, x):
        s = x @ self.w
        return torch.stack([s, -s], dim=1)


def _at(distance: float) -> torch.Tensor:
    w = Linear().w
    return distance * w / w.norm()  # a clip `distance` away from the plane, on class 0's side


def test_the_exact_clopper_pearson_bound():
    assert clopper_pearson_lower(10, 10, 0.05) == pytest.approx(0.05 ** (1 / 10))  # k = n: alpha^(1/n)
    assert clopper_pearson_lower(0, 10, 0.05) == 0.0
    assert clopper_pearson_lower(500, 1000, 0.001) < 0.5 < clopper_pearson_lower(560, 1000, 0.001)
    with pytest.raises(ValueError):
        clopper_pearson_lower(11, 10, 0.05)


@pytest.mark.parametrize("distance", [0.3, 0.6, 1.0])
def test_the_certified_radius_is_sound_and_near_the_true_one(distance):
    smoothed = Smoothed(Linear(), sigma=0.5, n0=100, n=4000, alpha=0.001, batch=1000)
    label, radius = smoothed.certify(_at(distance))
    assert label == 0
    assert radius <= distance  # sound: never beyond the plane
    # and tight up to the sampling bound: sigma * Phi^-1 of the lower bound at the true probability
    p = norm.cdf(distance / 0.5)
    assert radius >= 0.5 * norm.ppf(p - 4 * math.sqrt(p * (1 - p) / 4000)) - 1e-9
    assert smoothed.certify(_at(distance)) == (label, radius)  # seeded: the same draws each call


def test_on_the_boundary_it_abstains():
    smoothed = Smoothed(Linear(), sigma=0.5, n0=100, n=2000, alpha=0.001, batch=1000)
    assert smoothed.certify(_at(0.0)) == (ABSTAIN, 0.0)
    assert smoothed.predict(_at(0.0)) == ABSTAIN
    assert smoothed.predict(_at(-1.0)) == 1


def test_certified_accuracy_counts_right_answers_at_each_radius():
    clips = [(_at(0.2), 0), (_at(0.6), 0), (_at(1.5), 0), (_at(-1.5), 0)]  # the last is certified, but wrong
    smoothed = Smoothed(Linear(), sigma=0.5, n=4000, batch=1000)
    got = certified_accuracy(smoothed, clips, [0.0, 0.3, 0.8])
    assert got["certified_accuracy"] == {"0": 0.75, "0.3": 0.5, "0.8": 0.25}
    assert got["clips"][3]["prediction"] == 1 and got["clips"][3]["radius"] > 0.8
    assert linf_equivalent(0.438, 48_000) == pytest.approx(0.002, rel=1e-3)  # r = eps sqrt(T)


def test_gaussian_training_adds_seeded_noise_to_the_adversarial_share(tmp_path):
    from staa.training.adversarial import AdvTrainConfig, Step

    cfg = AdvTrainConfig(arch="mel_cnn", classes=["a", "b"], method="gaussian", noise_sigma=0.01, adv_ratio=0.5)
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(T, 2)

        def forward(self, x):
            seen.append(x.detach().clone())
            return self.lin(x)

    model = Spy()
    step = Step(cfg, model, model, torch.optim.SGD(model.parameters(), lr=0.0))
    x, y = torch.zeros(4, T), torch.tensor([0, 1, 0, 1])
    step(x, y, epoch=1, step=0)
    noisy = seen[-1]
    assert torch.equal(noisy[2:], x[2:])  # the clean half
    assert noisy[:2].std().item() == pytest.approx(0.01, rel=0.3)
    step(x, y, epoch=1, step=0)
    assert torch.equal(seen[-1], noisy)  # seeded per step
