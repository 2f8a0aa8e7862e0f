"""The universal perturbation as an attack: the same delta added to every clip (`staa train-universal` makes it)."""

from __future__ import annotations

import torch

from staa.attacks.base import Attack, check_eps
from staa.generator.universal import load_universal, tile
from staa.io.checkpoint import CheckpointError


class Universal(Attack):
    r"""One delta for every clip, tiled to its length: `x_adv = clip(x + tile(delta), -1, 1)`. No model query.

    Paper: Moosavi-Dezfooli et al., CVPR 2017 (universal perturbations); for SER, DARE-GP (IMWUT 2023)

    Distance Measure : Linf (and a sparse support)

    Arguments:
        model (nn.Module or None): the victim; never queried.
        delta (str): a `staa train-universal` checkpoint.
        eps (float or None): clip the delta to this budget; None keeps the one it was trained at.
        offset (int): where in the delta each clip starts. Default: 0.
        sample_rate (int or None): the victim's rate, checked against the delta's.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1]. - y: ignored. - output: `(N, T)`.

    Examples::
        >>> Universal(victim, "runs/universal/universal.pt")(x)
    """

    name = "universal"
    kind = "generator"
    gradient = False
    grid_eps = False
    paths = ("delta",)

    def __init__(self, model, delta: str, eps: float | None = None, offset: int = 0, *, sample_rate=None, device="cpu"):
        super().__init__(model)
        ckpt = load_universal(delta)
        if sample_rate is not None and ckpt["sample_rate"] != sample_rate:
            raise CheckpointError(f"{delta}: made at {ckpt['sample_rate']} Hz, the victim runs at {sample_rate} Hz")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a whole number of samples >= 0, got {offset!r}")
        self.eps = ckpt["eps"] if eps is None else min(check_eps(eps), ckpt["eps"])
        self.delta = ckpt["delta"].clamp(-self.eps, self.eps).to(device)
        self.offset = offset % len(self.delta)

    @classmethod
    def validate(cls, params: dict) -> None:
        if "eps" in params:
            check_eps(params["eps"])

    def perturb(self, x, y):
        return x + tile(self.delta, x.shape[-1], self.offset).to(x.device)

    def labels(self, x, y):
        return torch.zeros(len(x), dtype=torch.long, device=x.device) if y is None else y
