"""The Pareto front of a multi-objective sweep: the finished trials no other trial beats on every
objective.  Pure functions of the trial table; the objectives come from the sweep's settings
(``<sweep_dir>/sweep.json``, written by platform/sweep.py; ``records`` puts them in the meta).

Trial a *dominates* b when a is at least as good on every objective and strictly better on one
(lower for ``min``, higher for ``max``).  Identical points do not dominate each other, so
duplicates are all on the front; a tie on one objective is decided by the others.
"""
from __future__ import annotations

import math

import polars as pl

from reports.cells import Cell, format_number
from reports.methods import PARAM_SYMBOLS, format_param
from reports.schema import METRIC_NAMES

Objectives = list[tuple[str, str]]  # [(metric, "min" | "max"), ...]


def objectives_of(settings: dict | None) -> Objectives:
    """[(metric, direction), ...] of a sweep's saved settings ([] when it has none)."""
    settings = settings or {}
    metrics, modes = settings.get("objectives") or [], settings.get("modes") or []
    if len(metrics) != len(modes) or any(m not in ("min", "max") for m in modes):
        return []
    return [(str(m), str(d)) for m, d in zip(metrics, modes)]


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def candidates(trials: pl.DataFrame, objectives: Objectives) -> pl.DataFrame:
    """Finished trials with a finite value of every objective (the points a front is taken over)."""
    if not objectives or any(m not in trials.columns for m, _ in objectives):
        return trials.clear()
    rows = [r for r in trials.filter(pl.col("status") == "finished").to_dicts()
            if all(_finite(r[m]) for m, _ in objectives)]
    return pl.DataFrame(rows, schema=trials.schema) if rows else trials.clear()


def dominates(a: list[float], b: list[float], modes: list[str]) -> bool:
    """Whether point ``a`` dominates ``b`` (each objective minimised or maximised per ``modes``)."""
    sign = [1.0 if d == "min" else -1.0 for d in modes]
    a_s, b_s = [s * x for s, x in zip(sign, a)], [s * x for s, x in zip(sign, b)]
    return all(x <= y for x, y in zip(a_s, b_s)) and any(x < y for x, y in zip(a_s, b_s))


def front_mask(points: list[list[float]], modes: list[str]) -> list[bool]:
    """For each point, whether no other point dominates it."""
    return [not any(dominates(q, p, modes) for j, q in enumerate(points) if j != i) for i, p in enumerate(points)]


def pareto_front(trials: pl.DataFrame, objectives: Objectives) -> pl.DataFrame:
    """The non-dominated finished trials, sorted by the first objective (best first)."""
    pool = candidates(trials, objectives)
    if not pool.height:
        return pool
    metrics, modes = [m for m, _ in objectives], [d for _, d in objectives]
    points = [[float(r[m]) for m in metrics] for r in pool.select(metrics).to_dicts()]
    front = pool.filter(pl.Series(front_mask(points, modes)))
    return front.sort([*metrics, "name"], descending=[d == "max" for d in modes] + [False])


def front_table(trials: pl.DataFrame, objectives: Objectives, params: list[str]) -> tuple[list[str], list[list[Cell]]]:
    """Headers and cells of the report's Pareto table: trial, method, the searched ``params``, seed,
    then every objective with its direction."""
    front = pareto_front(trials, objectives)
    arrows = {"min": "↓", "max": "↑"}
    headers = ["trial", "method", *[PARAM_SYMBOLS.get(p, p) for p in params], "seed",
               *[f"{METRIC_NAMES.get(m, m)} {arrows[d]}" for m, d in objectives]]
    rows = [[Cell(r["name"]), Cell(r.get("label") or "?"),
             *[Cell(format_param(r.get(p))) for p in params], Cell(format_param(r.get("seed"))),
             *[Cell(format_number(r[m])) for m, _ in objectives]] for r in front.to_dicts()]
    return headers, rows


def pareto_note(trials: pl.DataFrame, objectives: Objectives) -> str:
    """One sentence: how many trials the front holds out of how many were compared."""
    pool, front = candidates(trials, objectives), pareto_front(trials, objectives)
    names = " and ".join(f"{METRIC_NAMES.get(m, m)} ({'lower' if d == 'min' else 'higher'} is better)"
                         for m, d in objectives)
    return (f"{front.height} of {pool.height} finished trials are on the Pareto front of {names}: no other "
            "trial is at least as good on every objective and better on one. Stopped and failed trials have no "
            "final values and are not compared.")
