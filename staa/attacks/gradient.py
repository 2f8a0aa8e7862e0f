"""Dense gradient attacks in l-inf: FGSM (one step) and PGD (k steps with a random start, Madry et al.)."""
from __future__ import annotations

import torch

from staa.attacks.base import Attack, check_eps


class FGSM(Attack):
    name = "fgsm"

    def __init__(self, model, eps: float = 0.03, **kw):
        super().__init__(model, **kw)
        self.eps = check_eps(eps)

    def perturb(self, x, y):
        return x + self.eps * self.loss_gradient(x, y).sign()


class PGD(Attack):
    name = "pgd"

    def __init__(self, model, eps: float = 0.03, alpha: float | None = None, steps: int = 10, random_start: bool = True, seed: int = 0, **kw):
        super().__init__(model, **kw)
        self.eps = check_eps(eps)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = steps
        self.alpha = alpha if alpha is not None else 2.5 * self.eps / steps
        self.random_start, self.seed = random_start, seed
        self.name = f"pgd{steps}"

    def start(self, x) -> torch.Tensor:
        """The initial perturbation: uniform in [-eps, eps] from this attack's seed, or zero."""
        if not self.random_start:
            return torch.zeros_like(x)
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        return (torch.rand(x.shape, generator=gen) * 2 - 1).to(x) * self.eps

    def perturb(self, x, y):
        delta = self.start(x)
        for _ in range(self.steps):
            grad = self.loss_gradient((x + delta).clamp(-1, 1), y)
            delta = (delta + self.alpha * grad.sign()).clamp(-self.eps, self.eps)
        return x + delta
