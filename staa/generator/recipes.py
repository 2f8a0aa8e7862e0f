"""Named generator-training recipes: settings of `AttackTrainConfig`, chosen by `train-attack --recipe NAME` and
`adv-train --recipe NAME`; any flag given explicitly overrides its recipe value.

- `default`: the best measured recipe (docs/experiments.md), `AttackTrainConfig`'s own defaults. The `cpu-fold` network (no layer at
  the full sample rate: a third of `cpu`'s time per clip). A straight-through mask and a sparsity budget of 20%:
  with the stochastic mask and the plain L1 penalty, short runs collapse the mask to nothing.
  Class-conditional: an unconditional generator pushes every clip towards one class and stalls well short of it.
  Constant learning rate and whole 3 s clips.
- `transfer`: the default without the sparsity loss, every epoch eligible whatever its l0: a dense perturbation, for
  attacking models never seen. From two surrogate families it reaches a held-out family more often than MI-FGSM at
  the same SNR, where the sparse default stays below it (docs/experiments.md, "A dense generator").
- `paper`: the authors' settings (the `paper` network size, Adam at 1e-3 halved every 5 epochs, the stochastic mask
  with a plain sparsity penalty, unconditional, on 1 s crops); docs/design.md says where the defaults depart from it.
"""

from __future__ import annotations

from staa.generator.training import AttackTrainConfig

# the settings every recipe sets (the rest, such as epochs and eps, are each run's own); a recipe may set other
# fields too (`transfer`: max_l0_ratio), left out of the others so that runs written before they existed still resume
KEYS = ("preset", "generator", "lr", "lr_halving_epochs", "w_mag", "w_spa", "spa_target", "conditional", "clip_seconds")
DEFAULT = {k: getattr(AttackTrainConfig(), k) for k in KEYS}  # the config's own defaults

RECIPES: dict[str, dict] = {
    "default": DEFAULT,
    "transfer": {**DEFAULT, "w_spa": 0.0, "max_l0_ratio": 1.0},
    "paper": {
        "preset": "paper",
        "generator": {},
        "lr": 1e-3,
        "lr_halving_epochs": 5,
        "w_mag": 0.0,
        "w_spa": 1.0,
        "spa_target": 0.0,
        "conditional": False,
        "clip_seconds": 1.0,
    },
}


def recipe(name: str) -> dict:
    """A fresh copy of the recipe's settings (safe to update)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    return {k: dict(v) if isinstance(v, dict) else v for k, v in RECIPES[name].items()}
