"""Preprocessing defenses on waveform batches: `parse_defense("mp3:32")(x, sample_rate)`."""
from defenses.base import Defense
from defenses.bpda import through
from defenses.registry import DEFENSES, Chain, Identity, parse_defense

__all__ = ["DEFENSES", "Chain", "Defense", "Identity", "parse_defense", "through"]
