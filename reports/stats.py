"""Seeds -> configurations: grouping trials, and each group's mean ± 95% confidence interval.

A configuration is a group of trials with the same phase (baseline name), method label,
feature set and values of the *varied* method parameters (``methods.varied_params``).  Its
metrics are averaged over its finished trials; the 95% interval is
``t_{0.975, n-1} * s / sqrt(n)`` (scipy.stats.t) for n >= 2, and n = 1 has none.
"""
from __future__ import annotations

import math
from collections import Counter

from reports.methods import method_params
from reports.schema import METRICS, STATUSES
from reports.seed_noise import seed_spread


def mean_ci(values, confidence: float = 0.95) -> tuple[float | None, float | None, int]:
    """(mean, half-width of the two-sided t interval, n) of the finite values; no interval for n < 2."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return None, None, 0
    mean = sum(xs) / n
    if n == 1:
        return mean, None, 1
    from scipy.stats import t
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return mean, float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n), n


def group_key(row: dict, varied: list[str]) -> tuple:
    """(kind, baseline, label, varied values, feature set) of a trial row."""
    params = method_params(row)
    kind = "baseline" if row.get("phase") == "baselines" else "search"
    return (kind, (row.get("baseline") or "") if kind == "baseline" else "", row.get("label") or "?",
            tuple(params[f] for f in varied), row.get("feature_set") or "")


def group_trials(rows: list[dict], varied: list[str]) -> dict[tuple, list[dict]]:
    """Trial rows by ``group_key``, in first-seen order; trials without a feature set yet
    (unfinished) join their configuration's first group that has one."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(group_key(row, varied), []).append(row)
    for key in [k for k in groups if k[4] == ""]:
        siblings = [k for k in groups if k[:4] == key[:4] and k[4]]
        if siblings:
            groups[siblings[0]].extend(groups.pop(key))
    return groups


def metric_summary(members: list[dict]) -> dict:
    """``<metric>_mean``, ``<metric>_ci``, ``<metric>_n`` and the seed spread ``<metric>_sd``,
    ``<metric>_min``, ``<metric>_max`` over the finished members, per metric."""
    finished = [m for m in members if m.get("status") == "finished"]
    out = {}
    for m in METRICS:
        values = [f.get(m) for f in finished]
        mean, ci, n = mean_ci(values)
        spread = seed_spread(values)
        out.update({f"{m}_mean": mean, f"{m}_ci": ci, f"{m}_n": n, f"{m}_sd": spread["sd"],
                    f"{m}_min": spread["min"], f"{m}_max": spread["max"]})
    return out


def status_summary(statuses: list[str]) -> str:
    """``2 finished, 1 stopped`` in STATUSES order."""
    counts = Counter(statuses)
    return ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
