"""Seed noise: the seed variance pooled over a sweep's configurations, and the 95% interval of a
difference of two configurations' means that it gives.

A configuration (a row of the configuration table) is a set of trials that differ only in their
seed.  Pooling the seed variance over the configurations with at least two seeds,

    s_p^2 = sum_i (n_i - 1) s_i^2 / sum_i (n_i - 1),      df = sum_i (n_i - 1),

gives a usable noise estimate even at two seeds per configuration (it assumes the seed variance
is about the same for every method of the sweep).  The difference of the means of two
configurations a and b then has the two-sample interval

    (mean_a - mean_b) ± t_{0.975, df} * s_p * sqrt(1/n_a + 1/n_b),

and a difference whose interval spans zero is *within seed noise*: a report does not show it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def pooled_variance(groups: Iterable[Sequence[float]]) -> tuple[float | None, int]:
    """(s_p^2, degrees of freedom) of the seed values of each configuration; (None, 0) when no
    configuration has two finite values (every configuration n = 1: no noise estimate)."""
    squares, df = 0.0, 0
    for group in groups:
        xs = _finite(group)
        if len(xs) < 2:
            continue
        mean = sum(xs) / len(xs)
        squares += sum((x - mean) ** 2 for x in xs)  # = (n_i - 1) s_i^2
        df += len(xs) - 1
    return (squares / df, df) if df else (None, 0)


def difference_ci(mean_a: float, n_a: int, mean_b: float, n_b: int, variance: float, df: int,
                  confidence: float = 0.95) -> tuple[float, float]:
    """(mean_a - mean_b, half-width of its two-sided interval) with the pooled seed variance."""
    from scipy.stats import t
    half = float(t.ppf(0.5 + confidence / 2, df)) * math.sqrt(variance) * math.sqrt(1 / n_a + 1 / n_b)
    return mean_a - mean_b, half


def within_noise(delta: float, half_width: float) -> bool:
    """Whether the interval ``delta ± half_width`` spans zero (the difference is not shown)."""
    return abs(delta) <= half_width


def seed_spread(values) -> dict:
    """``{"mean", "sd", "min", "max", "n"}`` of the finite values (sd: n - 1 in the denominator,
    None for n < 2; everything None for n = 0)."""
    xs = _finite(values)
    n = len(xs)
    if n == 0:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    mean = sum(xs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    return {"mean": mean, "sd": sd, "min": min(xs), "max": max(xs), "n": n}
