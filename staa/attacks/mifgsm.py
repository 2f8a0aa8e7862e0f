"""MI-FGSM (Dong et al., 2018): iterative FGSM with momentum on the l1-normalised gradient, the transfer baseline;
with input diversity (Xie et al., 2019) each step may see a randomly resampled and shifted copy of the clip."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from staa.attacks.base import Attack, check_count, check_eps
from staa.datasets.augment import resample_shift


class MIFGSM(Attack):
    r"""MI-FGSM: `steps` signed steps of eps / steps along a momentum of the l1-normalised gradients.

    Paper: Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018; input diversity: Xie et al.,
    "Improving Transferability of Adversarial Examples with Input Diversity", CVPR 2019

    Distance Measure : Linf

    Arguments:
        model (nn.Module): the surrogate (or victim), waveforms to logits.
        eps (float): l-inf budget on [-1, 1] waveforms. Default: 0.03.
        steps (int): Default: 10.
        decay (float): the momentum's decay factor mu. Default: 1.0 (0: I-FGSM).
        diversity (float): the chance that a step sees the clip resampled by a random factor in [0.9, 1.1] and
            shifted (the audio form of DI's resize and pad); the gradient flows through it. Default: 0 (none).
        seed (int): the draws of the input diversity. Default: 0.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1]. - y: `(N)` labels, or None (untargeted: the model's clean prediction;
          targeted: the target classes). - output: `(N, T)`.

    Examples::
        >>> MIFGSM(surrogate, eps=0.03, steps=10, diversity=0.5)(x)
    """

    name = "mifgsm"

    def __init__(
        self, model, eps: float = 0.03, steps: int = 10, decay: float = 1.0, diversity: float = 0.0, seed: int = 0, **kw
    ):
        super().__init__(model, **kw)
        self.eps = check_eps(eps)
        self.steps = check_count("steps", steps, 10_000)
        if not 0 <= decay <= 10:
            raise ValueError(f"decay must be within 0-10, got {decay}")
        if not 0 <= diversity <= 1:
            raise ValueError(f"diversity must be a probability in [0, 1], got {diversity}")
        self.decay, self.diversity, self.seed = decay, diversity, seed

    def diverse_gradient(self, x_adv: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x_adv = x_adv.detach().requires_grad_(True)
        seen = x_adv
        if self.diversity and float(torch.rand(1, generator=gen)) < self.diversity:
            seen = resample_shift(x_adv, gen)
        loss = F.cross_entropy(self.model(seen), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        return -grad if self.targeted else grad

    def perturb(self, x, y):
        gen = torch.Generator().manual_seed(self.seed)
        alpha, momentum, x_adv = self.eps / self.steps, torch.zeros_like(x), x
        for _ in range(self.steps):
            grad = self.diverse_gradient(x_adv, y, gen)
            momentum = self.decay * momentum + grad / grad.abs().mean(dim=1, keepdim=True).clamp(min=1e-12)
            x_adv = (x + (x_adv + alpha * momentum.sign() - x).clamp(-self.eps, self.eps)).clamp(-1, 1)
        return x_adv
