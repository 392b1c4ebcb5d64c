"""The texts that qualify the results table: how its numbers were computed, the seed-noise band,
the best verdict, the baselines' seed spread and the time-to-quality caption (notes), and the
warning of a sweep whose differences cannot be told from seed noise."""
from __future__ import annotations

import math

from reports.cells import WITHIN_NOISE, delta_header, digits_for_table, format_number
from reports.comparison import Comparison
from reports.schema import METRIC_NAMES
from reports.tables import ConfigTable
from reports.time_to_quality import ESTIMATED, WALL

NO_SEED_REPEATS = "no seed repeats: differences cannot be told from seed noise"


def _fmt(x: float | None, digits: int, sign: bool = False) -> str:
    return "—" if x is None else f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _delta(delta: float, half: float, digits: int) -> str:
    return f"Δ {_fmt(delta, digits, sign=True)} ± {_fmt(half, digits)}"


def noise_band(c: Comparison, name: str, digits: int, prefix: str) -> str | None:
    """The pooled seed noise and the smallest difference two single runs can show."""
    if c.variance is None:
        return None
    from scipy.stats import t
    sd = math.sqrt(c.variance)
    single = float(t.ppf(0.975, c.df)) * sd * math.sqrt(2)
    return (f"{prefix}Seed noise of {name}: s_p = {_fmt(sd, digits)}, pooled over the {c.pooled_configs} "
            f"configuration(s) with ≥ 2 finished seeds (df = {c.df}); two single runs must differ by more "
            f"than {_fmt(single, digits)} to be told apart, two means of n seeds by √(2/n) times that.")


def best_verdict(c: Comparison, name: str, digits: int, prefix: str = "") -> str | None:
    """Why a configuration has the ★, or why none has."""
    if c.top is None:
        return None
    if c.variance is None:
        return f"{prefix}No configuration is marked best: {NO_SEED_REPEATS}."
    if c.against is None:
        return f"{prefix}No configuration is marked best: there is nothing to compare {c.top} with."
    diff = _delta(c.delta, c.delta_ci, digits)
    if c.best is None:
        return (f"{prefix}No configuration is marked best: the top configurations are within seed noise "
                f"({c.top} vs {c.against}: {diff}, {WITHIN_NOISE}).")
    text = f"{prefix}★ {c.best}: better {name} than {c.against} beyond seed noise ({diff})"
    if c.runner_up:
        text += (f"; its lead over the runner-up {c.runner_up} ({_delta(c.runner_delta, c.runner_ci, digits)}) "
                 "is within seed noise, so their order is not shown")
    return text + "."


def baseline_spreads(table: ConfigTable, digits: int) -> list[str]:
    """``vanilla: mean 12.00, sd 2.00, min–max 10.00–14.00, n=3`` for each baseline with a result."""
    m = table.metric
    rows = [r for r in table.frame.to_dicts() if r["kind"] == "baseline" and r.get(f"{m}_n")] \
        if table.frame.height else []
    out = []
    for r in rows:
        mean, sd, lo, hi = (_fmt(r[f"{m}_{k}"], digits) for k in ("mean", "sd", "min", "max"))
        where = f" [{r['feature_set']}]" if table.mixed_feature_sets else ""
        out.append(f"{r['label']}{where}: mean {mean}, sd {sd}, min–max {lo}–{hi}, n={r[f'{m}_n']}")
    return out


def baseline_spread(table: ConfigTable, name: str, digits: int) -> str | None:
    """``Seed spread of the baselines (FID): vanilla: mean 12.00, sd 2.00, min–max 10.00–14.00, n=3; ...``"""
    parts = baseline_spreads(table, digits)
    return f"Seed spread of the baselines ({name}): " + "; ".join(parts) + "." if parts else None


def time_to_quality_note(table: ConfigTable, seconds_source: str | None) -> str | None:
    if table.reference_fid_k is None:
        return None
    seconds = {WALL: "the wall-clock seconds the runs logged (wall_s, evaluations included)",
               ESTIMATED: "training time estimated from the logged throughput (Σ steps × global batch / "
                          "images/s of the loss lines; evaluation and checkpoint time not included)",
               "mixed": "logged wall-clock seconds (wall_s) where a run logged them, else training time "
                        "estimated from its throughput (Σ steps × global batch / images/s)"}
    return (f"steps / seconds to vanilla's FID-k: the first evaluation step at which a trial's FID-k (the "
            f"in-training proxy) is at or below vanilla's final FID-k ({format_number(table.reference_fid_k)}: "
            "the mean over vanilla's seeds of each seed's last FID-k), averaged over the seeds that reached it; "
            "'not reached': no seed did; '(k/n seeds)': only k did. Seconds: "
            f"{seconds.get(seconds_source, 'not available (no throughput logged)')}. Paper analogue: Fig. 5.")


def table_notes(table: ConfigTable, feature_sets: list[str], seconds_source: str | None = None) -> list[str]:
    """The notes printed under the configuration table."""
    name = METRIC_NAMES.get(table.metric, table.metric)
    digits = digits_for_table(table)
    reference = next((c.reference_label for c in table.comparisons if c.reference_label), None)
    notes = [(f"Mean ± 95% confidence interval over seeds (Student t, n − 1 degrees of freedom); '(n=1)' marks a "
             f"single finished run (no interval). Only finished trials enter the statistics. ★ / highlighted "
             f"row: the best mean {name}, given only when its difference from the reference baseline (from the "
             f"runner-up when it is the reference, or without a baseline) is outside the 95% seed-noise interval. "
             f"Metrics use the {', '.join(feature_sets) or '—'} feature set; '—': no value, or a method field "
             f"that does not apply to the row's method.")]
    if reference:
        notes.append(f"{delta_header(reference)}: mean − {reference}'s mean ± t_0.975,df · s_p · √(1/n_a + 1/n_b), "
                     f"s_p the seed standard deviation pooled over the configurations; '*': the interval excludes "
                     f"zero; '{WITHIN_NOISE}': it spans zero.")
    for c in table.comparisons:
        prefix = f"[{c.feature_set}] " if len(table.comparisons) > 1 else ""
        notes += [t for t in (noise_band(c, name, digits, prefix), best_verdict(c, name, digits, prefix)) if t]
    notes += [t for t in (baseline_spread(table, name, digits), time_to_quality_note(table, seconds_source)) if t]
    return [*notes,
            ("params: parameter count of the model (routing masks hold no parameters); GFLOPs: forward "
            "multiply-accumulates per sample / 1e9 (the DiT paper's unit); images/s: median training "
            "throughput per trial, averaged over seeds."),
            *[f"[{marker}] {text}" for marker, text in table.paper_notes]]


def noise_warnings(table: ConfigTable) -> list[str]:
    """The report warning of a sweep (or feature set) without any configuration seeded twice."""
    scored = [c for c in table.comparisons if c.top is not None]
    return [NO_SEED_REPEATS + "; nothing is marked best (run at least two seeds per configuration)."] \
        if any(c.variance is None for c in scored) else []
