"""Auto-PGD in l-inf (Croce & Hein, 2020): PGD with momentum and a step size that halves at checkpoints where the
loss stopped rising, restarted from random points for the clips not yet fooled. `APGD` climbs the cross-entropy;
`APGDT` the targeted DLR loss towards each of the victim's next `n_targets` most likely classes in turn (the
targeted cross-entropy for fewer than 4 classes, where DLR is undefined).

Each returns, per clip, the first iterate that fools the victim, else the one with the highest loss. One run costs
steps + 1 forward and backward passes of the victim per clip (times `eot`), on the clips still unfooled."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from staa.attacks.base import Attack, check_count, check_eps, margin
from staa.metrics.classification import fooled


def checkpoints(steps: int) -> list[int]:
    """The iterations where the step size may halve: p_0 = 0, p_1 = 0.22, p_j+1 = p_j + max(p_j - p_j-1 - 0.03, 0.06)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(round(q * steps, 6)) for q in p[1:] if q <= 1})  # round: 0.7 * 10 is 7.000000000000001


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """The difference-of-logits ratio per clip, to be maximised: untargeted -(z_y - max_{i != y} z_i) / (z_1 - z_3),
    targeted -(z_y - z_t) / (z_1 - (z_3 + z_4) / 2), z_k the k-th largest logit. Invariant to shifting and scaling
    the logits, so a victim cannot mask its gradient by their size."""
    top = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None])[:, 0]
    if target is not None:
        z_t = logits.gather(1, target[:, None])[:, 0]
        return -(z_y - z_t) / (top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + 1e-12)
    return -margin(logits, y) / (top[:, 0] - top[:, 2] + 1e-12)


class APGD(Attack):
    r"""APGD: PGD with momentum and a step size that halves at checkpoints where progress stalls, on the cross-entropy or the DLR loss. Per clip the first iterate that fools the victim, else the highest-loss one.

    Paper: Croce & Hein, "Reliable Evaluation of Adversarial Robustness with an Ensemble of Diverse Parameter-free Attacks", ICML 2020

    Distance Measure : Linf

    Arguments:
        model (nn.Module): the victim, waveforms to logits.
        eps (float): l-inf budget on [-1, 1] waveforms. Default: 0.03.
        steps (int): Default: 100.
        restarts (int): Default: 1.
        loss (str): "ce" or "dlr". Default: "ce".
        rho (float): the checkpoint condition's share. Default: 0.75.
        seed (int): the random start's seed. Default: 0.
        eot (int): gradients averaged per step. Default: 1.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1]. - y: `(N)` labels, or None (untargeted: the victim's clean prediction;
          targeted: the target classes). - output: `(N, T)`.

    Examples::
        >>> APGD(model, eps=0.002, steps=20)(x, y)
    """

    name = "apgd"

    def __init__(
        self,
        model: nn.Module,
        eps: float = 0.03,
        steps: int = 100,
        restarts: int = 1,
        loss: str = "ce",
        rho: float = 0.75,
        seed: int = 0,
        eot: int = 1,
        **kw,
    ):
        super().__init__(model, **kw)
        self.eps = check_eps(eps)
        self.steps = check_count("steps", steps, 10_000)
        self.restarts = check_count("restarts", restarts, 100)
        self.eot = check_count("eot", eot, 100)
        if loss not in ("ce", "dlr"):
            raise ValueError(f"loss must be 'ce' or 'dlr', got {loss!r}")
        if not 0 < rho <= 1:
            raise ValueError(f"rho must be in (0, 1], got {rho}")
        if loss == "dlr" and self.targeted:
            raise ValueError("a targeted apgd climbs the cross-entropy (loss=ce); apgd_t picks targets for DLR")
        self.loss, self.rho, self.seed = loss, rho, seed
        self.name = f"apgd_{loss}{steps}"

    def objective(self, logits, y, target):
        """The per-clip loss to maximise."""
        if self.loss == "dlr" and logits.shape[1] >= 4:
            return dlr_loss(logits, y, target)
        ce = F.cross_entropy(logits, target if target is not None else y, reduction="none")
        return -ce if target is not None or self.targeted else ce

    def _value_and_grad(self, x_adv, y, target):
        """Loss, gradient (averaged over `eot` draws of a random model) and logits at `x_adv`."""
        losses, grads, logits = 0.0, 0.0, None
        for _ in range(self.eot):
            xa = x_adv.detach().requires_grad_(True)
            out = self.model(xa)
            loss = self.objective(out, y, target)
            (g,) = torch.autograd.grad(loss.sum(), xa)
            losses, grads, logits = losses + loss.detach(), grads + g, out.detach()
        return losses / self.eot, grads / self.eot, logits

    def run(self, x, y, target=None, start: torch.Tensor | None = None):
        """One APGD run from `start` (default: uniform in the eps-ball from the attack's seed): (x_adv, fooled)."""
        eps, n = self.eps, len(x)
        lo, hi = (x - eps).clamp(-1, 1), (x + eps).clamp(-1, 1)
        project = lambda z: torch.max(torch.min(z, hi), lo)
        x_k = project(x + (start if start is not None else torch.zeros_like(x)))
        eta = torch.full((n, 1), 2 * eps, device=x.device)
        loss, grad, logits = self._value_and_grad(x_k, y, target)
        best_loss, x_max, grad_max = loss.clone(), x_k.clone(), grad.clone()
        done = fooled(y, logits.argmax(1), y if self.targeted else None)
        found = x_k.clone()
        x_prev = x_k.clone()
        marks = set(checkpoints(self.steps))
        rises = torch.zeros(n, device=x.device)
        last_mark, eta_at_mark, best_at_mark = 0, eta.clone(), best_loss.clone()
        for k in range(self.steps):
            z = project(x_k + eta * grad.sign())
            alpha = 1.0 if k == 0 else 0.75  # the first step has no momentum to draw on
            x_next = project(x_k + alpha * (z - x_k) + (1 - alpha) * (x_k - x_prev))
            x_prev = x_k
            loss_next, grad_next, logits = self._value_and_grad(x_next, y, target)
            ok = fooled(y, logits.argmax(1), y if self.targeted else None)
            first = ok & ~done
            found[first], done = x_next[first], done | ok
            rises += (loss_next > loss).float()
            better = loss_next > best_loss
            best_loss = torch.where(better, loss_next, best_loss)
            x_max = torch.where(better[:, None], x_next, x_max)
            grad_max = torch.where(better[:, None], grad_next, grad_max)
            x_k, loss, grad = x_next, loss_next, grad_next
            if done.all():  # every clip has its adversarial example: more steps cannot change the result
                break
            if k + 1 in marks:
                stalled = rises < self.rho * (k + 1 - last_mark)
                flat = (eta == eta_at_mark)[:, 0] & (best_loss <= best_at_mark)
                halve = stalled | flat
                eta_at_mark, best_at_mark = eta.clone(), best_loss.clone()
                eta = torch.where(halve[:, None], eta / 2, eta)
                # the halved clips go on from their best point, with its gradient and no momentum
                h = halve[:, None]
                x_k, grad, loss = (
                    torch.where(h, x_max, x_k),
                    torch.where(h, grad_max, grad),
                    torch.where(halve, best_loss, loss),
                )
                x_prev = torch.where(h, x_k, x_prev)
                rises.zero_()
                last_mark = k + 1
        found[~done] = x_max[~done]
        return found, done

    def _start(self, x, restart: int) -> torch.Tensor:
        gen = torch.Generator(device="cpu").manual_seed(self.seed * 1000 + restart)
        return ((torch.rand(x.shape, generator=gen) * 2 - 1) * self.eps).to(x)

    def perturb(self, x, y):
        out, done = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for r in range(self.restarts):
            todo = (~done).nonzero()[:, 0]
            if len(todo) == 0:
                break
            adv, ok = self.run(x[todo], y[todo], start=self._start(x[todo], r))
            out[todo], done[todo] = adv, ok
        return out


class APGDT(APGD):
    r"""APGD-T: APGD on the targeted DLR loss towards each of the victim's next `n_targets` most likely classes in turn (the targeted cross-entropy below 4 classes, where DLR is undefined), on the clips still unfooled. Untargeted as a whole.

    Paper: Croce & Hein, ICML 2020

    Distance Measure : Linf

    Arguments:
        model (nn.Module): the victim, waveforms to logits.
        eps (float): l-inf budget on [-1, 1] waveforms. Default: 0.03.
        steps (int): per target. Default: 100.
        n_targets (int): at most C - 1 are used. Default: 9.
        seed (int): the random start's seed. Default: 0.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1]. - y: `(N)` labels, or None (untargeted: the victim's clean prediction;
          targeted: the target classes). - output: `(N, T)`.

    Examples::
        >>> APGDT(model, eps=0.002, steps=20)(x, y)
    """

    name = "apgd_t"

    def __init__(self, model, eps: float = 0.03, steps: int = 100, n_targets: int = 9, seed: int = 0, **kw):
        super().__init__(model, eps=eps, steps=steps, restarts=1, loss="dlr", seed=seed, **kw)
        if self.targeted:
            raise ValueError("apgd_t picks its own targets: it is an untargeted attack")
        self.n_targets = check_count("n_targets", n_targets, 1000)
        self.name = f"apgd_t{steps}"

    def perturb(self, x, y):
        with torch.no_grad():
            ranked = self.model(x).argsort(dim=1, descending=True)
        out, done = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for t in range(1, min(self.n_targets, ranked.shape[1] - 1) + 1):
            todo = (~done).nonzero()[:, 0]
            if len(todo) == 0:
                break
            adv, ok = self.run(x[todo], y[todo], target=ranked[todo, t], start=self._start(x[todo], t))
            # a clip nobody fooled keeps the first target's highest-loss point
            keep = ok | (t == 1)
            out[todo[keep]], done[todo] = adv[keep], ok
        return out

    def objective(self, logits, y, target):
        if logits.shape[1] >= 4:
            return dlr_loss(logits, y, target)
        return -F.cross_entropy(logits, target, reduction="none")  # too few classes for DLR: targeted CE
