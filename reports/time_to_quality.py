"""Time to quality (DTR paper Fig. 5: DTR reaches the baseline's quality sooner): the first step,
and the seconds, at which a trial's FID-k reaches the vanilla baseline's final FID-k.

The reference is the mean over the finished vanilla seeds of each seed's last FID-k (the trial
row's ``fid_k``).  Seconds come from the curves (``schema.CURVE_SCHEMA``): the ``wall_s`` the
run logged (wall-clock seconds since it started, evaluations included) when it logged any,
else an estimate of the training time alone, summed over the loss lines as
``(step - previous step) * global_batch / images_per_s`` (``images_per_s`` is the throughput of
the steps since the previous loss line); both interpolated linearly to the FID-k step.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl

from reports.methods import is_vanilla_baseline

WALL = "wall_s"              # seconds as the run logged them
ESTIMATED = "images_per_s"   # seconds estimated from the throughput of the loss lines


def reference_fid_k(trials: pl.DataFrame) -> tuple[float | None, str | None]:
    """(mean of the finished vanilla baseline trials' last FID-k, their feature set); (None, None)
    without a finished vanilla trial that logged a FID-k."""
    rows = [r for r in trials.to_dicts() if is_vanilla_baseline(r) and r.get("status") == "finished"
            and r.get("fid_k") is not None]
    if not rows:
        return None, None
    feature_sets = Counter(r.get("feature_set") for r in rows if r.get("feature_set"))
    return sum(r["fid_k"] for r in rows) / len(rows), (feature_sets.most_common(1)[0][0] if feature_sets else None)


def _last_per_step(part: pl.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``column``, one per step (the last logged: a resumed run logs again)."""
    agg = (part.filter(pl.col(column).is_not_null()).group_by("step", maintain_order=True)
           .agg(pl.col(column).last()).sort("step"))
    return agg["step"].to_numpy().astype(float), agg[column].to_numpy().astype(float)


def elapsed_seconds(part: pl.DataFrame, step: int, global_batch: int | None) -> float | None:
    """Seconds one trial's run took to reach ``step`` (its curve rows ``part``): its ``wall_s``
    when it logged any, else the training time estimated from ``images_per_s``; None if neither."""
    if WALL in part.columns and part[WALL].drop_nulls().len():
        steps, wall = _last_per_step(part.group_by("step").agg(pl.col(WALL).max()), WALL)
        return float(np.interp(step, steps, wall))
    if not global_batch or ESTIMATED not in part.columns or not part[ESTIMATED].drop_nulls().len():
        return None
    steps, rate = _last_per_step(part, ESTIMATED)
    window = np.diff(np.concatenate([[0.0], steps])) * global_batch / np.maximum(rate, 1e-9)
    return float(np.interp(step, np.concatenate([[0.0], steps]), np.concatenate([[0.0], np.cumsum(window)])))


def time_to_quality(curves: pl.DataFrame, reference_fid_k: float,
                    global_batch: dict[str, int] | None = None) -> dict[str, tuple[int | None, float | None]]:
    """Trial name -> (first step whose FID-k <= ``reference_fid_k``, seconds to that step), for
    every trial with a FID-k curve; (None, None) when its FID-k never got there.  ``global_batch``
    (trial name -> images per step) is needed only to estimate seconds without ``wall_s``."""
    out: dict[str, tuple[int | None, float | None]] = {}
    if curves.height == 0:
        return out
    for (name,), part in curves.group_by("name", maintain_order=True):
        fid = part.filter(pl.col("fid_k").is_not_null()).sort("step")
        if fid.height == 0:
            continue
        reached = fid.filter(pl.col("fid_k") <= reference_fid_k)
        if reached.height == 0:
            out[name] = (None, None)
            continue
        step = int(reached["step"][0])
        out[name] = (step, elapsed_seconds(part, step, (global_batch or {}).get(name)))
    return out


def seconds_source(curves: pl.DataFrame) -> str | None:
    """How the seconds were had: ``WALL`` (every trial with a FID-k curve logged wall_s),
    ``ESTIMATED`` (none did), "mixed", or None (no FID-k curve)."""
    with_fid = set(curves.filter(pl.col("fid_k").is_not_null())["name"].to_list()) if curves.height else set()
    if not with_fid:
        return None
    walled = set(curves.filter(pl.col(WALL).is_not_null())["name"].to_list()) & with_fid
    return WALL if walled == with_fid else ESTIMATED if not walled else "mixed"


def with_time_to_quality(trials: pl.DataFrame, curves: pl.DataFrame) -> pl.DataFrame:
    """``trials`` with ``steps_to_vanilla_fid_k`` and ``seconds_to_vanilla_fid_k`` filled in (null
    where the trial never reached the reference, has no FID-k curve, was scored with other
    features than vanilla, or the sweep has no finished vanilla trial)."""
    reference, feature_set = reference_fid_k(trials)
    reached = {}
    if reference is not None:
        batch = {n: b for n, b in zip(trials["name"].to_list(), trials["global_batch"].to_list()) if b}
        comparable = {n for n, fs in zip(trials["name"].to_list(), trials["feature_set"].to_list())
                      if fs in (None, feature_set)}
        reached = {n: v for n, v in time_to_quality(curves, reference, batch).items() if n in comparable}
    names = trials["name"].to_list()
    return trials.with_columns(
        pl.Series("steps_to_vanilla_fid_k", [reached.get(n, (None, None))[0] for n in names], dtype=pl.Int64),
        pl.Series("seconds_to_vanilla_fid_k", [reached.get(n, (None, None))[1] for n in names], dtype=pl.Float64))


def configuration_time_to_quality(members: list[dict], reference_feature_set: str | None) -> dict:
    """A configuration's time to quality over its finished seeds with a FID-k curve (scored with
    the reference's features): ``steps_to_vanilla_fid_k`` and ``seconds_to_vanilla_fid_k``, means
    over the seeds that reached it (None when none did), ``vanilla_fid_k_reached`` of
    ``vanilla_fid_k_seeds`` seeds."""
    tried = [m for m in members if m.get("status") == "finished" and m.get("fid_k") is not None
             and m.get("feature_set") in (None, reference_feature_set)]
    steps = [m["steps_to_vanilla_fid_k"] for m in tried if m.get("steps_to_vanilla_fid_k") is not None]
    seconds = [m["seconds_to_vanilla_fid_k"] for m in tried if m.get("seconds_to_vanilla_fid_k") is not None]
    return {"steps_to_vanilla_fid_k": sum(steps) / len(steps) if steps else None,
            "seconds_to_vanilla_fid_k": sum(seconds) / len(seconds) if seconds else None,
            "vanilla_fid_k_reached": len(steps), "vanilla_fid_k_seeds": len(tried)}
