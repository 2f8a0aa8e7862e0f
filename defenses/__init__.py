"""Preprocessing defenses on waveform batches: `parse_defense("mp3:32")(x, sample_rate)`; `defense.bpda(x, sample_rate)`
for adaptive attacks through it."""

from defenses.base import Defense
from defenses.registry import DEFENSES, Chain, Identity, parse_defense

__all__ = ["DEFENSES", "Chain", "Defense", "Identity", "parse_defense"]
