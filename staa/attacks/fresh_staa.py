"""STAA with a generator trained against the victim itself: the generator attack that can judge a hardened model."""

from __future__ import annotations

from staa.attacks.base import Attack, check_eps
from staa.attacks.staa_net import STAA
from staa.io.validate import in_range


class FreshSTAA(STAA):
    r"""STAA whose generator is trained against the victim alone at the attack's budget, before it attacks.

    A generator made on the original model says little about a hardened copy: it may simply not transfer. This one is
    white-box. `staa evaluate` trains it on the grid dataset's train and val splits (`OUT/generators/VICTIM/ATTACK/`,
    resumed like every cell); a generator that collapsed (it fooled almost nothing on val, or its mask closed) is a
    failed attack, flagged `failed_attack`, and its accuracy is no evidence of robustness.

    Distance Measure : Linf (and a sparse support)

    Arguments:
        model (nn.Module): the victim; it also tells the class-conditional generator each clip's class.
        eps (float): the l-inf budget it is trained and run at (default: the grid's).
        epochs (int): training epochs of the default recipe (default: 2).
        generator (str): the trained checkpoint; supplied by `staa evaluate`, never by a spec.

    Examples::
        >>> staa evaluate --victim at=runs/at/victim.pt --attack fresh=fresh_staa:epochs=2 --eps 0.002 ...
    """

    name = "fresh_staa"
    gradient = True  # trained on the victim's own gradients
    grid_eps = True
    paths = ()

    def __init__(
        self,
        model,
        eps: float = 0.002,
        epochs: int = 2,
        *,
        generator: str | None = None,
        sample_rate=None,
        device="cpu",
    ):
        if generator is None:
            raise ValueError(
                "fresh_staa trains its generator against the victim in `staa evaluate`; elsewhere give a trained one "
                "(staa:generator=G.pt)"
            )
        super().__init__(model, generator, eps, classifier=model, sample_rate=sample_rate, device=device)
        self.epochs = epochs

    @classmethod
    def validate(cls, params: dict) -> None:
        if "generator" in params:
            raise ValueError("fresh_staa trains its own generator: give eps and epochs, not generator")
        if params.get("eps") is not None:
            check_eps(params["eps"])
        in_range("epochs", params.get("epochs", 2), 1, 1000)

    @classmethod
    def describe(cls, params: dict, *, eps: float | None, victim_sha: str) -> dict:
        """The grid's budget unless the spec sets one; never a transfer attack."""
        return Attack.describe.__func__(cls, params, eps=eps, victim_sha=victim_sha)
