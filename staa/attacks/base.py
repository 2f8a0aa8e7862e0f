"""The attack call shape shared by every attack: `attack(x, y=None) -> x_adv` (torchattacks-style)."""

from __future__ import annotations

import inspect

import torch
from torch import nn
from torch.nn import functional as F


def check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"expected waveforms as a tensor [batch, samples], got {getattr(x, 'shape', type(x))}")
    if x.shape[-1] == 0:
        raise ValueError("waveforms have zero samples")
    if not torch.isfinite(x).all():
        raise ValueError("waveforms contain NaN or Inf")


def check_eps(eps: float) -> float:
    """An l-inf budget for waveforms in [-1, 1]: in (0, 1]."""
    if not 0 < eps <= 1:
        raise ValueError(f"eps must be > 0 and <= 1, got {eps}")
    return float(eps)


def check_count(name: str, value: int, hi: int) -> int:
    """Steps, restarts, EOT draws: they bound the work (victim passes per clip)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
        raise ValueError(f"{name} must be within 1-{hi}, got {value!r}")
    return value


def margin(logits: torch.Tensor, y: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """The logit margin per clip, z_y - max_{i != y} z_i: below 0, the clip is fooled. Targeted: its negative."""
    z_y = logits.gather(1, y[:, None])[:, 0]
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return other - z_y if targeted else z_y - other


class Attack:
    """Base class of every attack, called as `attack(x, y=None) -> x_adv` on waveforms `[batch, samples]` in [-1, 1].

    Untargeted by default: with `y=None` the victim's clean prediction is the label to move away from (the fooling
    rate). With `targeted=True`, `y` holds the target classes. A subclass implements `perturb(x, y)` and says what it
    is in class attributes, which the registry, the evaluation grid, its sanity rules and the report read:

    - `kind`: "single_step", "iterative", "black_box" (victim outputs only) or "generator" (a trained network, one
      forward pass, no query to the victim).
    - `norm`: the budget's norm, "Linf" (`eps`), "L2" or "L0" (a count of samples, with an l-inf bound).
    - `gradient`: reads the victim's input gradient (a masked gradient defeats it).
    - `adaptive`: built anew for each defense and run through it (BPDA/EOT); takes `defense` and `sample_rate`.
    - `grid_eps`: a spec without `eps` takes the grid's (a generator keeps the budget it was trained at).
    - `paths`: parameters that name files; `{victim}` in them becomes the victim's name.
    """

    name = "attack"
    kind = "iterative"
    norm = "Linf"
    gradient = True
    adaptive = False
    grid_eps = True
    paths: tuple[str, ...] = ()
    passes = 0.0  # forward passes of the victim per clip in the last call (a gradient step is one, plus its backward)

    def __init__(self, model: nn.Module | None, *, targeted: bool = False):
        self.model = model
        self.targeted = targeted

    @classmethod
    def validate(cls, params: dict) -> None:
        """Raise ValueError for spec parameters out of range, before any victim is loaded. By default the constructor's
        own checks, run on a stand-in victim, so each range is written once, in the constructor."""
        cls(nn.Identity(), **params)

    @classmethod
    def describe(cls, params: dict, *, eps: float | None, victim_sha: str) -> dict:
        """What a grid cell records of this attack built from spec `params`: `eps`, the l-inf budget it runs at (the
        grid's `eps` where the spec sets none; None without one), and `transfer`, whether it was made on another model
        than the victim whose checkpoint has SHA-256 `victim_sha`."""
        default = {p.name: p.default for p in inspect.signature(cls).parameters.values()}.get("eps")
        takes = "eps" in params or (default is not None and default is not inspect.Parameter.empty)
        budget = params.get("eps", eps if cls.grid_eps else default) if takes else None
        return {"eps": budget, "transfer": False}

    @torch.no_grad()
    def labels(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if y is not None:
            return y.to(x.device)
        if self.targeted:
            raise ValueError(f"{self.name}: a targeted attack needs target labels y")
        return self.model(x).argmax(dim=1)

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_batch(x)
        model = self.model if isinstance(self.model, nn.Module) else None
        was_training = model is not None and model.training
        if model is not None:
            model.eval()
        seen = []
        hook = None
        try:
            y = self.labels(x, y)
            # counted by a hook, so every attack's cost is measured the same way, whatever its loop does
            # (a TorchScript module takes no hooks: its count stays unknown)
            if model is not None and not isinstance(model, torch.jit.ScriptModule):
                hook = model.register_forward_pre_hook(lambda _, args: seen.append(len(args[0])))
            x_adv = self.perturb(x, y).detach().clamp(-1.0, 1.0)
            self.passes = sum(seen) / len(x) if hook is not None or model is None else float("nan")
            return x_adv
        finally:
            if hook is not None:
                hook.remove()
            if model is not None:
                model.train(was_training)

    def perturb(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The adversarial clips for clips `x` and labels `y` (as `labels` made them); the victim is in eval mode."""
        raise NotImplementedError

    def loss_gradient(self, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Gradient of the cross-entropy that the attack climbs (descends, when targeted)."""
        x_adv = x_adv.detach().requires_grad_(True)
        loss = nn.functional.cross_entropy(self.model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        return -grad if self.targeted else grad
