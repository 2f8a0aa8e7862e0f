"""Attacks on waveform victims, all called as `attack(x, y=None) -> x_adv`."""
from __future__ import annotations

from staa.attacks.adaptive import AdaptivePGD, Defended
from staa.attacks.base import Attack
from staa.attacks.cw import CW
from staa.attacks.gradient import FGSM, PGD
from staa.attacks.sparse import SparsePGD
from staa.attacks.staa import STAA

__all__ = ["AdaptivePGD", "Attack", "Defended", "CW", "FGSM", "PGD", "STAA", "SparsePGD"]
