"""The attack registry: every command names an attack by a spec of `staa.specs`' grammar, bound to the attack's
constructor (`pgd:steps=10`, `fgsm:eps=0.01`, `staa:generator=G.pt`, `fresh_staa:epochs=2`, `mifgsm:diversity=0.5`, `adaptive_pgd:steps=10:eot=4`, `apgd`,
`apgd_t`, `square:queries=1000`, `standard`), or by a TOML table (`{type = "pgd", steps = 10}`). `pgd10` and `pgd100` are aliases of `pgd:steps=10` and `pgd:steps=100`."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from torch import nn

from staa import specs
from staa.attacks.adaptive_pgd import AdaptivePGD
from staa.attacks.apgd import APGD, APGDT
from staa.attacks.base import Attack
from staa.attacks.cw import CW
from staa.attacks.fgsm import FGSM
from staa.attacks.fresh_staa import FreshSTAA
from staa.attacks.mifgsm import MIFGSM
from staa.attacks.pgd import PGD
from staa.attacks.snr_budget import SNRBudget, check_snr
from staa.attacks.sparse_pgd import SparsePGD
from staa.attacks.square import Square
from staa.attacks.staa_net import STAA
from staa.attacks.standard import Standard
from staa.attacks.universal import Universal

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls
    for cls in (
        STAA,
        FGSM,
        PGD,
        CW,
        SparsePGD,
        AdaptivePGD,
        APGD,
        APGDT,
        Square,
        Standard,
        FreshSTAA,
        MIFGSM,
        Universal,
    )
}


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Make `cls` (an `Attack` subclass) available to every spec under `cls.name`; usable as a class decorator."""
    if not (isinstance(cls, type) and issubclass(cls, Attack)) or cls.perturb is Attack.perturb:
        raise TypeError(f"{cls!r} is not an Attack subclass that implements perturb")
    if ATTACKS.get(cls.name, cls) is not cls:
        raise ValueError(f"an attack named {cls.name!r} is already registered")
    ATTACKS[cls.name] = cls
    return cls


ALIASES = {"pgd10": "pgd:steps=10", "pgd100": "pgd:steps=100"}
# what the caller supplies, not the spec: the victim, the defense an adaptive attack runs through, where it runs
CONTEXT = ("model", "defense", "sample_rate", "device")


def takes_snr(cls: type[Attack]) -> bool:
    """An l-inf attack made at run time at any eps can take its budget as an SNR (a generator keeps its own)."""
    return cls.grid_eps and cls.kind != "generator" and any(p.name == "eps" for p in specs.parameters(cls))


@dataclass(frozen=True)
class AttackSpec:
    type: str
    params: dict
    text: str

    @property
    def cls(self) -> type[Attack]:
        return ATTACKS[self.type]

    @property
    def adaptive(self) -> bool:
        """Made anew against each defense (the defense is part of the attacked system)."""
        return self.cls.adaptive

    def value(self, name: str, default=None):
        """Parameter `name` as the attack will use it: the spec's value, else its constructor's default (`default`
        when it takes no such parameter)."""
        if name in self.params:
            return self.params[name]
        found = [p.default for p in specs.parameters(self.cls) if p.name == name]
        return found[0] if found and found[0] is not inspect.Parameter.empty else default

    def build(
        self,
        model: nn.Module,
        *,
        eps: float | None = None,
        seed: int | None = None,
        defense=None,
        sample_rate: int | None = None,
        device="cpu",
        victim: str = "",
        snr: float | None = None,
    ) -> Attack:
        """The attack on `model`. `eps` and `seed` are defaults for attacks that take them and whose spec sets none
        (where the attack takes the grid's eps: a generator keeps its own budget unless its spec gives one). `snr`
        (dB), the spec's or this default, replaces eps with a per-clip budget (`SNRBudget`)."""
        cls = self.cls
        names = {p.name for p in specs.parameters(cls)}
        kw = self.params_for(victim)
        snr = kw.pop("snr", snr if takes_snr(cls) and "eps" not in kw else None)
        for key, default in (("eps", eps if cls.grid_eps else None), ("seed", seed)):
            if default is not None and key in names and key not in kw:
                kw[key] = default
        context = {"defense": defense, "sample_rate": sample_rate, "device": device}
        kw |= {k: v for k, v in context.items() if k in names}
        needs = [p for p in specs.parameters(cls) if p.name == "defense"]
        if defense is None and needs and needs[0].default is inspect.Parameter.empty:
            raise ValueError(f"attack {self.text!r}: an adaptive attack runs through a defense; none was given")
        if snr is not None:
            return SNRBudget(model, lambda e: cls(model, **(kw | {"eps": e})), cls, snr)
        return cls(model, **kw)

    def describe(self, *, eps: float | None, victim: str = "", victim_sha: str = "") -> dict:
        """`Attack.describe` of this spec's attack class on the victim named `victim`; with an SNR budget its `eps`
        is None (it differs per clip) and `snr_budget` holds the dB."""
        params = self.params_for(victim)
        snr = params.pop("snr", None)
        described = self.cls.describe(params, eps=eps, victim_sha=victim_sha)
        return described | {"eps": None, "snr_budget": snr} if snr is not None else described

    def params_for(self, victim: str) -> dict:
        """The spec's parameters, `{victim}` in its file paths replaced by the victim's name."""
        return {k: str(v).replace("{victim}", victim) if k in self.cls.paths else v for k, v in self.params.items()}


def parse_attack(spec, name: str | None = None) -> AttackSpec:
    """An attack spec (`"pgd:steps=10"`, an alias, or a TOML table `{type = "pgd", steps = 10}`), checked: unknown
    attacks and parameters, wrong types and out-of-range values are a ValueError naming `name` (or the spec)."""
    label = f"attack {name!r} =" if name else "attack"
    if isinstance(spec, dict):
        params = dict(spec)
        kind, positional, keyword = params.pop("type", None), [], params
        text = ":".join([str(kind)] + [f"{k}={specs.text(v)}" for k, v in params.items()])
    elif isinstance(spec, str):
        text = ALIASES.get(spec.strip(), spec.strip())
        kind, positional, keyword = specs.split(text, label)
    else:
        raise ValueError(f"{label} {spec!r}: expected a spec string or a table")
    if kind not in ATTACKS:
        raise ValueError(
            f"{label} {text!r}: unknown type {kind!r}; choose from {', '.join(ATTACKS)} (aliases: {', '.join(ALIASES)})"
        )
    try:
        keyword = dict(keyword)
        snr = keyword.pop("snr", None)
        params = specs.bind(text, label, ATTACKS[kind], positional, keyword, skip=CONTEXT)
        ATTACKS[kind].validate(params)
        if snr is not None:
            params["snr"] = _snr_param(ATTACKS[kind], params, snr)
    except ValueError as err:
        msg = str(err)
        raise ValueError(msg if msg.startswith(label) else f"{label} {text!r}: {msg}") from None
    return AttackSpec(kind, params, text)


def _snr_param(cls: type[Attack], params: dict, snr) -> float:
    if not takes_snr(cls):
        raise ValueError(f"{cls.name} has no l-inf budget made at run time, so it takes no snr")
    if "eps" in params:
        raise ValueError("give one budget: eps or snr")
    try:
        return check_snr(float(snr))
    except (TypeError, ValueError):
        raise ValueError(f"snr must be a number of dB within -20-120, got {snr!r}") from None


def build_attack(spec, model: nn.Module, **context) -> Attack:
    """`parse_attack(spec).build(model, **context)`."""
    return parse_attack(spec).build(model, **context)
