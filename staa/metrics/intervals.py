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


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """The one-sided (1 - alpha) lower confidence bound of a rate of `k` in `n`, exact (Clopper-Pearson): what a
    certificate may rely on, unlike an approximate interval."""
    from scipy.stats import beta

    if not 0 <= k <= n or n == 0:
        raise ValueError(f"a rate needs 0 <= k <= n and n > 0, got k={k}, n={n}")
    return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))
