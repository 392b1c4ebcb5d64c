"""Which differences a report may show: every configuration against the reference baseline with the
pooled seed noise (``seed_noise``), and the one configuration that may be called best.

Per feature set (FIDs of different features never compare):

- the *reference* is the vanilla baseline when the sweep has one, else its best baseline;
- each configuration's ``delta`` = its mean - the reference's mean, ``delta_ci`` the half-width
  of the 95% two-sample interval with the pooled s_p, ``delta_shown`` whether that interval
  excludes zero (otherwise the difference is within seed noise and not shown);
- the configuration with the best mean gets ``best`` (the ★) only when its difference from the
  reference baseline is outside that interval; when it *is* the reference, or the sweep has no
  baseline, it is compared with the runner-up instead.  Without a pooled variance (every
  configuration n = 1) nothing is best.  A starred configuration whose lead over the runner-up
  is within seed noise keeps its star (it beats the reference) and the note says so.
"""
from __future__ import annotations

from dataclasses import dataclass

from reports.methods import is_vanilla_baseline
from reports.seed_noise import difference_ci, pooled_variance, within_noise


@dataclass
class Comparison:
    """The noise band and the best verdict of one feature set's configurations."""

    feature_set: str | None
    variance: float | None = None     # pooled seed variance s_p^2 of the metric (None: no seed repeats)
    df: int = 0
    pooled_configs: int = 0           # configurations with >= 2 finished seeds that entered the pool
    reference: str | None = None      # the reference configuration's name
    reference_label: str | None = None  # its short name for headers ("vanilla")
    top: str | None = None            # the configuration with the best mean
    against: str | None = None        # what ``top`` was compared with (reference, or runner-up)
    delta: float | None = None        # top - against, and the half-width of its 95% interval
    delta_ci: float | None = None
    best: str | None = None           # the starred configuration (None: within seed noise)
    runner_up: str | None = None      # set when the starred one's lead over it is within seed noise
    runner_delta: float | None = None
    runner_ci: float | None = None


def reference_row(rows: list[dict], metric: str, sign: int) -> dict | None:
    """The vanilla baseline row with a result, else the best baseline row with one, else None."""
    baselines = [r for r in rows if r["kind"] == "baseline" and r.get(f"{metric}_mean") is not None]
    vanilla = [r for r in baselines if is_vanilla_baseline(r)]
    if vanilla:
        return vanilla[0]
    return min(baselines, key=lambda r: sign * r[f"{metric}_mean"]) if baselines else None


def _diff(a: dict, b: dict, metric: str, comparison: Comparison) -> tuple[float, float]:
    return difference_ci(a[f"{metric}_mean"], a[f"{metric}_n"], b[f"{metric}_mean"], b[f"{metric}_n"],
                         comparison.variance, comparison.df)


def _judge_best(scored: list[dict], ref: dict | None, metric: str, c: Comparison) -> None:
    """Fill the best verdict of ``c`` from the configurations ``scored`` (best mean first)."""
    top = scored[0]
    c.top = top["name"]
    against = ref if ref is not None and ref is not top else (scored[1] if len(scored) > 1 else None)
    if against is None or c.variance is None:
        return
    c.against = against["name"]
    c.delta, c.delta_ci = _diff(top, against, metric, c)
    if within_noise(c.delta, c.delta_ci):
        return
    c.best, top["best"] = top["name"], True
    runner = scored[1] if len(scored) > 1 else None
    if runner is not None and runner is not against:
        delta, half = _diff(top, runner, metric, c)
        if within_noise(delta, half):
            c.runner_up, c.runner_delta, c.runner_ci = runner["name"], delta, half


def compare_configurations(rows: list[dict], metric: str, mode: str) -> list[Comparison]:
    """Set ``delta``, ``delta_ci``, ``delta_shown``, ``is_reference`` and ``best`` on every
    configuration row (dicts with ``kind``, ``baseline``, ``label``, ``name``, ``feature_set``,
    ``<metric>_mean``, ``<metric>_n`` and ``_values``: the finished seeds' values of ``metric``);
    one ``Comparison`` per feature set."""
    sign = 1 if mode == "min" else -1
    out = []
    feature_sets = sorted({r["feature_set"] for r in rows if r["feature_set"]})
    for r in rows:
        r.update(delta=None, delta_ci=None, delta_shown=False, is_reference=False, best=False)
    for fs in feature_sets or [None]:
        members = [r for r in rows if r["feature_set"] == fs]
        c = Comparison(feature_set=fs)
        c.variance, c.df = pooled_variance(r["_values"] for r in members)
        c.pooled_configs = sum(len(r["_values"]) >= 2 for r in members)
        scored = sorted((r for r in members if r.get(f"{metric}_mean") is not None),
                        key=lambda r: sign * r[f"{metric}_mean"])
        ref = reference_row(scored, metric, sign)
        if ref is not None:
            ref["is_reference"] = True
            c.reference, c.reference_label = ref["name"], ref.get("baseline") or ref["label"]
            for r in scored:
                if r is not ref and c.variance is not None:
                    r["delta"], r["delta_ci"] = _diff(r, ref, metric, c)
                    r["delta_shown"] = not within_noise(r["delta"], r["delta_ci"])
        if scored:
            _judge_best(scored, ref, metric, c)
        out.append(c)
    return out
