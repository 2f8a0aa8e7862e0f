"""A sparse baseline: PGD-l0 in the style of top-k projected gradient attacks.

Each step takes a signed gradient step in l-inf, then projects onto the set of perturbations with at
most `k = l0_ratio * T` non-zero samples (keeping the largest |delta|). Memory stays linear in the clip
length, unlike JSMA's pairwise saliency map (quadratic: 48,000 samples per 3 s clip).
"""

from __future__ import annotations

import torch

from staa.attacks.base import Attack, check_count, check_eps


def keep_top_k(delta: torch.Tensor, k: int) -> torch.Tensor:
    if k >= delta.shape[-1]:
        return delta
    idx = delta.abs().topk(k, dim=-1).indices
    return torch.zeros_like(delta).scatter_(-1, idx, delta.gather(-1, idx))


class SparsePGD(Attack):
    r"""Sparse PGD: PGD whose perturbation keeps only its `l0_ratio` largest samples after each step: the iterative baseline for STAA's sparsity.

    Paper: after Croce & Hein, "Sparse and Imperceivable Adversarial Attacks", ICCV 2019

    Distance Measure : L0 (with an l-inf bound)

    Arguments:
        model (nn.Module): the victim, waveforms to logits.
        eps (float): l-inf budget on [-1, 1] waveforms. Default: 0.03.
        l0_ratio (float): share of samples that may change. Default: 0.1.
        steps (int): Default: 20.
        alpha (float or None): step size. Default: eps / 4.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1]. - y: `(N)` labels, or None (untargeted: the victim's clean prediction;
          targeted: the target classes). - output: `(N, T)`.

    Examples::
        >>> SparsePGD(model, eps=0.03, l0_ratio=0.1)(x, y)
    """

    name = "sparse_pgd"
    norm = "L0"

    def __init__(
        self, model, eps: float = 0.03, l0_ratio: float = 0.1, steps: int = 20, alpha: float | None = None, **kw
    ):
        super().__init__(model, **kw)
        self.eps = check_eps(eps)
        if not 0 < l0_ratio <= 1:
            raise ValueError(f"l0_ratio must be in (0, 1], got {l0_ratio}")
        self.l0_ratio, self.steps = l0_ratio, check_count("steps", steps, 10_000)
        self.alpha = alpha if alpha is not None else self.eps / 4

    def perturb(self, x, y):
        k = max(1, int(self.l0_ratio * x.shape[-1]))
        delta = torch.zeros_like(x)
        for _ in range(self.steps):
            grad = self.loss_gradient((x + delta).clamp(-1, 1), y)
            delta = keep_top_k((delta + self.alpha * grad.sign()).clamp(-self.eps, self.eps), k)
        return x + delta
