"""Carlini-Wagner l2: minimise ||delta||_2^2 + c * max(margin, -kappa) with Adam in tanh space."""

from __future__ import annotations

import torch

from staa.attacks.base import Attack, check_count
from staa.generator.losses import cw_margin


class CW(Attack):
    r"""Carlini-Wagner l2: minimise ||delta||_2^2 + c * max(margin, -kappa) with Adam in tanh space. The smallest successful example seen is kept per clip; a clip never fooled comes back unchanged. No binary search over c, so its cost stays at `steps` passes.

    Paper: Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", S&P 2017

    Distance Measure : L2

    Arguments:
        model (nn.Module): the victim, waveforms to logits.
        c (float): weight of the margin term. Default: 1.0.
        kappa (float): confidence margin. Default: 0.
        steps (int): Adam steps. Default: 100.
        lr (float): Adam's learning rate. Default: 0.01.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1]. - y: `(N)` labels, or None (untargeted: the victim's clean prediction;
          targeted: the target classes). - output: `(N, T)`.

    Examples::
        >>> CW(model, c=1.0, steps=100)(x, y)
    """

    name = "cw"
    norm = "L2"

    def __init__(self, model, c: float = 1.0, kappa: float = 0.0, steps: int = 100, lr: float = 0.01, **kw):
        super().__init__(model, **kw)
        if not c > 0 or not lr > 0:
            raise ValueError(f"C&W needs c > 0 and lr > 0 (got c={c}, lr={lr})")
        check_count("steps", steps, 10_000)
        self.c, self.kappa, self.steps, self.lr = c, kappa, steps, lr

    def perturb(self, x, y):
        w = torch.atanh(x.clamp(-1 + 1e-6, 1 - 1e-6)).detach().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=self.lr)
        best, best_l2 = x.clone(), torch.full((x.shape[0],), float("inf"), device=x.device)
        for _ in range(self.steps):
            x_adv = torch.tanh(w)
            l2 = (x_adv - x).pow(2).sum(dim=1)
            logits = self.model(x_adv)
            margin = cw_margin(logits, y, targeted=self.targeted, kappa=self.kappa)
            loss = (l2 + self.c * margin).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                pred = logits.argmax(dim=1)
                ok = (pred == y) if self.targeted else (pred != y)
                better = ok & (l2 < best_l2)
                best[better], best_l2[better] = x_adv[better].detach(), l2[better]
        return best
