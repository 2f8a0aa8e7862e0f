"""Detection by transform consistency (WaveGuard, Hussain et al., USENIX Security 2021): a clip is suspect when the
victim's answer on it and on g(clip) disagree, g an input transform (down-up sampling, quantisation, a codec, mel
inversion). Adversarial perturbations are brittle to g where speech is not. A detector names its transform by a
defense spec: `resample:8000`, `quantize:8`, `mp3:32`, `griffin_lim:64`."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from defenses.base import Defense
from defenses.registry import parse_defense


def js_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence per row between the softmaxes of two logit batches (natural log, in [0, ln 2])."""
    p, q = F.softmax(p_logits, dim=1), F.softmax(q_logits, dim=1)
    m = (p + q) / 2
    kl = lambda a: (a * (a.clamp_min(1e-12).log() - m.clamp_min(1e-12).log())).sum(1)
    return (kl(p) + kl(q)) / 2


class ConsistencyDetector:
    r"""Scores each clip by JS(victim(x), victim(g(x))); above a threshold calibrated on clean clips, it is flagged.

    Arguments:
        transform (Defense or str): g, as a defense or its spec.

    Examples::
        >>> ConsistencyDetector("resample:8000").score(model, x, 16_000)
    """

    def __init__(self, transform: Defense | str):
        self.transform = parse_defense(transform) if isinstance(transform, str) else transform

    @property
    def spec(self) -> str:
        return self.transform.spec

    def score(self, model, x: torch.Tensor, sample_rate: int, *, differentiable: bool = False) -> torch.Tensor:
        """Per clip; `differentiable`: through g's own gradient where it has one, BPDA where it has not (what an
        adaptive attacker climbs down)."""
        g = self.transform.bpda(x, sample_rate) if differentiable else self.transform(x, sample_rate)
        return js_divergence(model(x), model(g))

    def __repr__(self) -> str:
        return f"<detector {self.spec}>"


def parse_detector(spec: str) -> ConsistencyDetector:
    """A detector from its transform's defense spec; a clear ValueError names what is wrong."""
    return ConsistencyDetector(parse_defense(spec))
