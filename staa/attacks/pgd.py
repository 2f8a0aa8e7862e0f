"""PGD in l-inf (Madry et al., 2018): k signed-gradient steps from a random start, projected onto the eps-ball."""

from __future__ import annotations

import torch

from staa.attacks.base import Attack, check_count, check_eps


class PGD(Attack):
    r"""PGD: `steps` signed-gradient steps from a random start, each projected onto the eps-ball.

    Paper: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018

    Distance Measure : Linf

    Arguments:
        model (nn.Module): the victim, waveforms to logits.
        eps (float): l-inf budget on [-1, 1] waveforms. Default: 0.03.
        alpha (float or None): step size. Default: 2.5 * eps / steps.
        steps (int): Default: 10.
        random_start (bool): start uniform in the ball, else at x. Default: True.
        seed (int): the random start's seed. Default: 0.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1]. - y: `(N)` labels, or None (untargeted: the victim's clean prediction;
          targeted: the target classes). - output: `(N, T)`.

    Examples::
        >>> PGD(model, eps=0.002, steps=10)(x, y)
    """

    name = "pgd"

    def __init__(
        self,
        model,
        eps: float = 0.03,
        alpha: float | None = None,
        steps: int = 10,
        random_start: bool = True,
        seed: int = 0,
        **kw,
    ):
        super().__init__(model, **kw)
        self.eps = check_eps(eps)
        self.steps = check_count("steps", steps, 10_000)
        if alpha is not None and not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
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
