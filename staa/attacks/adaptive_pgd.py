"""Adaptive PGD against a preprocessing defense (Athalye et al., 2018): the attack runs through the defense,
with BPDA (identity backward) where the defense is not differentiable and EOT (gradients averaged over
`eot` draws) where it is random. Its success is judged on the defended system: defense, then victim."""

from __future__ import annotations

import torch
from torch import nn

from staa.attacks.base import check_count
from staa.attacks.pgd import PGD
from staa.metrics.classification import fooled


class Defended(nn.Module):
    """victim(defense(x)), with BPDA gradients; what a user of the defended model actually runs."""

    def __init__(self, model: nn.Module, defense, sample_rate: int):
        super().__init__()
        self.model, self.defense, self.sample_rate = model, defense, sample_rate
        # follow the victim's mode: a fresh Module is in training mode, and restoring *that* after an attack
        # would switch the shared victim (a submodule here) to training mode, batch-norm statistics and all
        self.train(model.training)

    def forward(self, x):
        return self.model(self.defense.bpda(x, self.sample_rate))


class AdaptivePGD(PGD):
    r"""PGD through a preprocessing defense: BPDA (the defense's own gradient, or the identity where it has none) and EOT (gradients averaged over `eot` draws of a random defense). Per clip it returns the first iterate that fools the defended victim.

    Paper: Athalye et al., "Obfuscated Gradients Give a False Sense of Security", ICML 2018

    Distance Measure : Linf

    Arguments:
        model (nn.Module): the victim, waveforms to logits.
        defense (Defense): the defense in front of the victim.
        sample_rate (int): the clips' rate, for the defense.
        eps (float): l-inf budget on [-1, 1] waveforms. Default: 0.03.
        steps (int): Default: 10.
        eot (int): draws per gradient for a random defense (one otherwise). Default: 4.
        seed (int): the random start's seed. Default: 0.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1]. - y: `(N)` labels, or None (untargeted: the victim's clean prediction;
          targeted: the target classes). - output: `(N, T)`.

    Examples::
        >>> AdaptivePGD(model, MP3(32), 16_000, eps=0.002)(x, y)
    """

    name = "adaptive_pgd"
    adaptive = True

    def __init__(
        self, model, defense, sample_rate: int, eps: float = 0.03, steps: int = 10, eot: int = 4, seed: int = 0, **kw
    ):
        super().__init__(Defended(model, defense, sample_rate), eps=eps, steps=steps, seed=seed, **kw)
        check_count("eot", eot, 100)
        self.eot = eot if defense.random else 1  # one draw is the exact gradient of a deterministic defense
        self.name = f"adaptive_pgd{steps}[{defense.spec}]"

    @classmethod
    def validate(cls, params: dict) -> None:
        """PGD's checks and the EOT count: no defense is needed to check them."""
        check_count("eot", params.get("eot", 4), 100)
        PGD.validate({k: v for k, v in params.items() if k != "eot"})

    def loss_gradient(self, x_adv, y):
        return torch.stack([super(AdaptivePGD, self).loss_gradient(x_adv, y) for _ in range(self.eot)]).mean(0)

    def perturb(self, x, y):
        """PGD through the defense, returning for each clip the first iterate that fools the defended victim
        (the last one where none does): through a staircase such as quantisation the BPDA gradient is rough, and
        a later step can undo an earlier success."""
        delta = self.start(x)
        best = x + delta
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.steps):
            grad = self.loss_gradient((x + delta).clamp(-1, 1), y)
            delta = (delta + self.alpha * grad.sign()).clamp(-self.eps, self.eps)
            candidate = (x + delta).clamp(-1, 1)
            with torch.no_grad():
                ok = fooled(y, self.model(candidate).argmax(1), y if self.targeted else None)
            take = ~done & ok
            best[take] = candidate[take]
            done |= ok
        best[~done] = (x + delta).clamp(-1, 1)[~done]
        return best
