"""FGSM (Goodfellow et al., 2015): one signed-gradient step of size eps in l-inf."""

from __future__ import annotations

from staa.attacks.base import Attack, check_eps


class FGSM(Attack):
    name = "fgsm"
    kind = "single_step"

    def __init__(self, model, eps: float = 0.03, **kw):
        super().__init__(model, **kw)
        self.eps = check_eps(eps)

    def perturb(self, x, y):
        return x + self.eps * self.loss_gradient(x, y).sign()
