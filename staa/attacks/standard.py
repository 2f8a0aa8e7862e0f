"""The standard suite (AutoAttack's, Croce & Hein 2020, on waveforms): per clip the worst case of APGD-CE, APGD-T and
Square at one eps, each run on the clips the ones before it left unfooled. Through a defense it attacks the defended
system, defense then victim: BPDA where the defense has no gradient, gradients averaged over `eot` draws where it is
random (Athalye et al., 2018), so the suite is its own adaptive form."""

from __future__ import annotations

import torch
from torch import nn

from staa.attacks.adaptive_pgd import Defended
from staa.attacks.apgd import APGD, APGDT
from staa.attacks.base import Attack, check_count, check_eps
from staa.attacks.square import Square
from staa.metrics.classification import fooled


class Standard(Attack):
    r"""The standard suite: per clip the worst case of APGD-CE, APGD-T and Square, each run on the clips the ones before left unfooled. Given a defense it attacks the defended system (BPDA, EOT over `eot` draws of a random one), so it is its own adaptive form. A clip none fools gets APGD-CE's highest-loss point; `per_attack` counts what each fooled.

    Paper: Croce & Hein, ICML 2020 (AutoAttack)

    Distance Measure : Linf

    Arguments:
        model (nn.Module): the victim, waveforms to logits.
        eps (float): l-inf budget on [-1, 1] waveforms. Default: 0.03.
        steps (int): APGD steps. Default: 100.
        queries (int): Square queries. Default: 1000.
        n_targets (int): APGD-T targets. Default: 9.
        eot (int): draws per gradient through a random defense. Default: 4.
        seed (int): the random start's seed. Default: 0.
        defense (Defense or None): attack through it.
        sample_rate (int or None): needed with a defense.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1]. - y: `(N)` labels, or None (untargeted: the victim's clean prediction;
          targeted: the target classes). - output: `(N, T)`.

    Examples::
        >>> Standard(model, eps=0.002, steps=20, queries=200)(x, y)
    """

    name = "standard"
    adaptive = True

    def __init__(
        self,
        model: nn.Module,
        eps: float = 0.03,
        steps: int = 100,
        queries: int = 1000,
        n_targets: int = 9,
        eot: int = 4,
        seed: int = 0,
        defense=None,
        sample_rate: int | None = None,
    ):
        if defense is not None:
            if sample_rate is None:
                raise ValueError("standard: a defense needs the sample rate")
            model = Defended(model, defense, sample_rate)
        super().__init__(model)
        check_eps(eps)
        check_count("eot", eot, 100)
        eot = eot if defense is not None and defense.random else 1  # one draw is the exact gradient otherwise
        self.attacks = [
            APGD(model, eps=eps, steps=steps, loss="ce", seed=seed, eot=eot),
            APGDT(model, eps=eps, steps=steps, n_targets=n_targets, seed=seed, eot=eot),
            Square(model, eps=eps, queries=queries, seed=seed),
        ]
        self.eps = eps
        self.name = "standard" + (f"[{defense.spec}]" if defense is not None else "")
        self.per_attack = {}

    def perturb(self, x, y):
        out, done = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.per_attack = {}
        for i, attack in enumerate(self.attacks):
            todo = (~done).nonzero()[:, 0]
            if len(todo) == 0:
                break
            adv = attack.perturb(x[todo], y[todo]).clamp(-1, 1)
            with torch.no_grad():
                ok = fooled(y[todo], self.model(adv).argmax(1))
            keep = ok | (i == 0)
            out[todo[keep]], done[todo] = adv[keep], ok
            self.per_attack[attack.name] = int(ok.sum())
        return out
