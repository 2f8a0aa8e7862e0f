"""Randomized smoothing of a waveform classifier (Cohen, Rosenfeld & Kolter, ICML 2019): the smoothed model answers
the class the base model gives most often under Gaussian noise of level `sigma` on the waveform, and certifies an l2
radius within which no perturbation changes that answer."""

from __future__ import annotations

import math

import torch
from scipy.stats import binomtest, norm
from torch import nn

from staa.metrics.intervals import clopper_pearson_lower

ABSTAIN = -1


class Smoothed:
    r"""A smoothed classifier: `predict(x)` (Cohen et al.'s PREDICT) and `certify(x)` (CERTIFY), one clip at a time.

    Arguments:
        model (nn.Module): the base victim, waveforms to logits.
        sigma (float): the noise level on [-1, 1] waveforms.
        n0 (int): noise draws that pick the class. Default: 100.
        n (int): noise draws that bound its probability. Default: 1000.
        alpha (float): the certificate fails with probability at most alpha. Default: 0.001.
        batch (int): draws per forward pass. Default: 100.
        seed (int): the noise's seed; every call starts from it, so answers repeat. Default: 0.
        defense (Defense or None): applied after the noise (a denoiser), as part of the base model.
        sample_rate (int or None): needed with a defense.

    Examples::
        >>> label, radius = Smoothed(model, sigma=0.002).certify(x)   # x: (T,)
    """

    def __init__(
        self,
        model: nn.Module,
        sigma: float,
        *,
        n0=100,
        n=1000,
        alpha=0.001,
        batch=100,
        seed=0,
        defense=None,
        sample_rate=None,
    ):
        if not sigma > 0 or not 0 < alpha < 1 or min(n0, n, batch) < 1:
            raise ValueError(
                f"smoothing needs sigma > 0, 0 < alpha < 1 and positive counts, got sigma={sigma}, alpha={alpha}"
            )
        if defense is not None and sample_rate is None:
            raise ValueError("a defense inside the smoothed model needs the sample rate")
        self.model, self.sigma, self.n0, self.n, self.alpha, self.batch = model, sigma, n0, n, alpha, batch
        self.seed, self.defense, self.sample_rate = seed, defense, sample_rate

    @torch.no_grad()
    def counts(self, x: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
        """How often each class wins over `num` noisy copies of the clip x (T,)."""
        self.model.eval()
        out = None
        for start in range(0, num, self.batch):
            k = min(self.batch, num - start)
            noisy = x.expand(k, -1) + self.sigma * torch.randn(k, x.shape[-1], generator=generator).to(x.device)
            if self.defense is not None:
                noisy = self.defense(noisy, self.sample_rate)
            logits = self.model(noisy)
            got = torch.bincount(logits.argmax(1).cpu(), minlength=logits.shape[1])
            out = got if out is None else out + got
        return out

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def predict(self, x: torch.Tensor) -> int:
        """The class, or ABSTAIN when the top two are not told apart at level alpha (a two-sided binomial test)."""
        c = self.counts(x, self.n, self._generator())
        top2 = torch.topk(c, 2).values.tolist() if len(c) > 1 else [int(c[0]), 0]
        if binomtest(top2[0], top2[0] + top2[1], 0.5).pvalue > self.alpha:
            return ABSTAIN
        return int(c.argmax())

    def certify(self, x: torch.Tensor) -> tuple[int, float]:
        """The class and its certified l2 radius sigma * Phi^-1(pA), pA the Clopper-Pearson lower bound of the class's
        probability; (ABSTAIN, 0) where pA is not above one half."""
        gen = self._generator()
        guess = int(self.counts(x, self.n0, gen).argmax())  # selection draws apart from the estimation draws
        p_a = clopper_pearson_lower(int(self.counts(x, self.n, gen)[guess]), self.n, self.alpha)
        if p_a <= 0.5:
            return ABSTAIN, 0.0
        return guess, self.sigma * float(norm.ppf(p_a))


def linf_equivalent(radius: float, n_samples: int) -> float:
    """The l-inf budget whose whole ball lies inside an l2 ball of `radius` on a clip of `n_samples`: an l-inf
    perturbation of eps has l2 norm at most eps * sqrt(T), so a certified radius r covers eps = r / sqrt(T)."""
    return radius / math.sqrt(n_samples)


def certified_accuracy(smoothed: Smoothed, dataset, radii) -> dict:
    """Per radius, the share of clips certified right at that l2 radius (Cohen et al.'s approximate certified test
    accuracy), with each clip's class, label and radius."""
    clips = []
    for i in range(len(dataset)):
        x, y = dataset[i]
        label, radius = smoothed.certify(x)
        clips.append({"label": int(y), "prediction": label, "radius": radius})
    n = len(clips)
    return {
        "n": n,
        "sigma": smoothed.sigma,
        "certified_accuracy": {
            f"{r:g}": sum(c["prediction"] == c["label"] and c["radius"] >= r for c in clips) / n for r in radii
        },
        "clips": clips,
    }


def certify_levels(model: nn.Module, dataset, sigmas, radii, **smoothing) -> list[dict]:
    """`certified_accuracy` of `model` smoothed at each of `sigmas` (`smoothing`: the other `Smoothed` arguments)."""
    return [certified_accuracy(Smoothed(model, sigma, **smoothing), dataset, radii) for sigma in sigmas]
