"""Attacks on waveform victims, all called as `attack(x, y=None) -> x_adv`; `parse_attack(spec)` builds one from a spec."""

from __future__ import annotations

from staa.attacks.adaptive_pgd import AdaptivePGD, Defended
from staa.attacks.apgd import APGD, APGDT
from staa.attacks.base import Attack
from staa.attacks.cw import CW
from staa.attacks.fgsm import FGSM
from staa.attacks.fresh_staa import FreshSTAA
from staa.attacks.mifgsm import MIFGSM
from staa.attacks.pgd import PGD
from staa.attacks.registry import ALIASES, ATTACKS, AttackSpec, build_attack, parse_attack, register_attack
from staa.attacks.sparse_pgd import SparsePGD
from staa.attacks.square import Square
from staa.attacks.staa_net import STAA
from staa.attacks.standard import Standard
from staa.attacks.universal import Universal

__all__ = [
    "APGD",
    "APGDT",
    "ALIASES",
    "ATTACKS",
    "AdaptivePGD",
    "Attack",
    "AttackSpec",
    "CW",
    "Defended",
    "FGSM",
    "FreshSTAA",
    "MIFGSM",
    "Universal",
    "PGD",
    "STAA",
    "SparsePGD",
    "Square",
    "Standard",
    "build_attack",
    "parse_attack",
    "register_attack",
]
