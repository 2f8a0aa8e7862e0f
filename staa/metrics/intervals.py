"""Uncertainty of a rate measured on n clips: the Wilson score interval, which stays inside [0, 1] and keeps its
coverage near 0 and 1, where robust accuracies and success rates of strong attacks live."""

from __future__ import annotations

from scipy.stats import binomtest


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """The interval of a rate of `k` in `n` (None when n is 0)."""
    if n == 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"a rate needs 0 <= k <= n, got k={k}, n={n}")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)
