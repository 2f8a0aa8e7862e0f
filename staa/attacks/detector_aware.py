"""The adaptive attacker a detector must face (Tramer et al., NeurIPS 2020): fool the victim *and* keep the detector's
score under its threshold, both by gradient (BPDA through the detector's transform, EOT where it is random)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from staa.attacks.base import check_count, margin
from staa.attacks.pgd import PGD


class DetectorAwarePGD(PGD):
    r"""PGD on the victim's margin plus `weight` x the detector's excess over its threshold; per clip it returns the
    first iterate that both fools the victim and passes the detector (else the last one).

    Arguments:
        model (nn.Module): the victim.
        detector (ConsistencyDetector): the detector to evade.
        threshold (float): its calibrated threshold.
        sample_rate (int): the clips' rate.
        eps (float), steps (int), seed (int): as PGD's. Defaults: 0.002, 50, 0.
        weight (float): the detector term's weight. Default: 10.
        eot (int): draws per gradient of a random transform. Default: 4.

    Examples::
        >>> DetectorAwarePGD(model, detector, threshold=0.05, sample_rate=16_000)(x)
    """

    name = "detector_pgd"
    adaptive = True

    def __init__(
        self, model, detector, threshold: float, sample_rate: int, eps=0.002, steps=50, seed=0, weight=10.0, eot=4
    ):
        super().__init__(model, eps=eps, steps=steps, seed=seed)
        self.detector, self.threshold, self.sample_rate, self.weight = detector, threshold, sample_rate, weight
        self.eot = check_count("eot", eot, 100) if detector.transform.random else 1
        self.name = f"detector_pgd{steps}[{detector.spec}]"

    def _objective(self, x_adv, y):
        scores = torch.stack(
            [self.detector.score(self.model, x_adv, self.sample_rate, differentiable=True) for _ in range(self.eot)]
        ).mean(0)
        # push the margin below zero, and the score below the threshold with a little room
        return F.relu(margin(self.model(x_adv), y) + 0.1) + self.weight * F.relu(scores - 0.9 * self.threshold), scores

    def perturb(self, x, y):
        delta = self.start(x)
        best = (x + delta).clamp(-1, 1)
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.steps):
            x_adv = (x + delta).clamp(-1, 1).detach().requires_grad_(True)
            loss, scores = self._objective(x_adv, y)
            (grad,) = torch.autograd.grad(loss.sum(), x_adv)
            with torch.no_grad():
                ok = (self.model(x_adv).argmax(1) != y) & (scores < self.threshold) & ~done
                best[ok], done = x_adv[ok].detach(), done | ok
                delta = (delta - self.alpha * grad.sign()).clamp(-self.eps, self.eps)
        with torch.no_grad():
            last = (x + delta).clamp(-1, 1)
            best[~done] = last[~done]
        return best
