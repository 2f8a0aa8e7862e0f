"""The Square attack in l-inf (Andriushchenko et al., 2020), on waveforms: a score-based black box that needs only
the victim's logits. It starts from a random vertex of the eps-ball (+-eps per sample) and, one query at a time,
redraws the sign of one random segment, keeping the change when the margin loss falls. Segments start at `p_init` of
the clip and shrink on the paper's schedule (scaled to the query budget), so it searches coarse to fine.

It never asks for a gradient, so a victim that hides its gradient (rounding, a non-differentiable front end) does
not hide from it: the evaluation's gradient-masking check. Each query is one forward pass of the victim."""

from __future__ import annotations

import torch
from torch import nn

from staa.attacks.base import Attack, check_count, check_eps, margin

# the iterations (of 10,000) at which the paper halves the share of the clip that one query changes
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


class Square(Attack):
    r"""Square, a score-based black box: from a random vertex of the eps-ball, one query at a time, redraw the sign of one random segment and keep it when the margin falls; segments shrink on the paper's schedule. It never reads a gradient, so a masked one cannot hide the victim from it.

    Paper: Andriushchenko et al., "Square Attack", ECCV 2020

    Distance Measure : Linf

    Arguments:
        model (nn.Module): the victim, waveforms to logits.
        eps (float): l-inf budget on [-1, 1] waveforms. Default: 0.03.
        queries (int): Default: 1000.
        p_init (float): share of the clip the first queries redraw. Default: 0.8.
        seed (int): the random start's seed. Default: 0.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1]. - y: `(N)` labels, or None (untargeted: the victim's clean prediction;
          targeted: the target classes). - output: `(N, T)`.

    Examples::
        >>> Square(model, eps=0.002, queries=1000)(x, y)
    """

    name = "square"
    kind = "black_box"
    gradient = False

    def __init__(
        self, model: nn.Module, eps: float = 0.03, queries: int = 1000, p_init: float = 0.8, seed: int = 0, **kw
    ):
        super().__init__(model, **kw)
        self.eps = check_eps(eps)
        self.queries = check_count("queries", queries, 1_000_000)
        if not 0 < p_init <= 1:
            raise ValueError(f"p_init must be in (0, 1], got {p_init}")
        self.p_init, self.seed = p_init, seed
        self.name = f"square{queries}"

    def share(self, i: int) -> float:
        """The share of the clip that query `i` redraws."""
        scaled = int(i / self.queries * 10_000)
        return self.p_init / 2 ** sum(scaled > h for h in HALVINGS)

    @torch.no_grad()
    def perturb(self, x, y):
        n, t = x.shape
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        lo, hi = (x - self.eps).clamp(-1, 1), (x + self.eps).clamp(-1, 1)
        signs = torch.randint(0, 2, (n, t), generator=gen).to(x) * 2 - 1
        x_adv = (x + self.eps * signs).clamp(lo, hi)
        loss = margin(self.model(x_adv), y, self.targeted)
        for i in range(1, self.queries):
            todo = (loss > 0).nonzero()[:, 0]
            if len(todo) == 0:
                break
            width = max(1, min(t, round(self.share(i) * t)))
            starts = torch.randint(0, t - width + 1, (len(todo),), generator=gen)
            cols = (starts[:, None] + torch.arange(width)).to(x.device)
            signs = (torch.randint(0, 2, (len(todo), width), generator=gen) * 2 - 1).to(x)
            cand = x_adv[todo].clone()
            cand.scatter_(1, cols, x[todo].gather(1, cols) + self.eps * signs)
            cand = cand.clamp(lo[todo], hi[todo])
            new_loss = margin(self.model(cand), y[todo], self.targeted)
            better = new_loss < loss[todo]
            x_adv[todo[better]], loss[todo[better]] = cand[better], new_loss[better]
        return x_adv
