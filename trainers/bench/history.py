"""Benchmark history: one JSON line per bench invocation in ``runs/bench/history.jsonl``
(besides the MLflow run in the ``benchmarks`` experiment), read back as a polars frame for
trend plots::

    from trainers.bench.history import bench_history
    df = bench_history(metrics=["dtr_step_ratio", "rtr_step_ratio"])
    # one row per (invocation, metric): time, metric, mean, band, std, n, unit, status, ...
"""
from __future__ import annotations

import json
import os

COLUMNS = {"time": "str", "run_id": "str", "suite": "str", "scale": "str", "git_commit": "str", "host": "str",
           "device": "str", "threads": "int", "engine": "str", "result": "str", "metric": "str",
           "mean": "float", "std": "float", "n": "int", "band": "float", "unit": "str", "gated": "bool",
           "status": "str"}


def history_path() -> str:
    from trainers.paths import runs_dir
    return os.path.join(runs_dir(), "bench", "history.jsonl")


def append_history(record: dict, path: str | None = None) -> str:
    """Append one invocation's record (see run.py for its fields); returns the path."""
    path = path or history_path()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    return path


def read_history(path: str | None = None) -> list[dict]:
    path = path or history_path()
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut short by a killed run
                    continue
    return out


def bench_history(path: str | None = None, *, metrics=None, scale: str | None = None,
                  suite: str | None = None):
    """The history as a long polars DataFrame, one row per (invocation, metric), oldest first.

    ``time`` is a UTC datetime; ``status`` is the metric's verdict against the baseline of that
    day (ok / REGRESSION / better / new / changed / info / unbanded); ``result`` the invocation's.
    Filters: ``metrics`` (names), ``scale`` ("full"/"tiny"), ``suite`` ("speed"/"quality"/"all").
    """
    import polars as pl
    dtypes = {"str": pl.Utf8, "float": pl.Float64, "int": pl.Int64, "bool": pl.Boolean}
    schema = {k: dtypes[v] for k, v in COLUMNS.items()}
    wanted = set(metrics) if metrics else None
    rows = []
    for rec in read_history(path):
        if (scale and rec.get("scale") != scale) or (suite and rec.get("suite") != suite):
            continue
        head = {k: rec.get(k) for k in ("time", "run_id", "suite", "scale", "git_commit", "host", "device",
                                       "threads", "engine", "result")}
        for name, m in rec.get("metrics", {}).items():
            if wanted is None or name in wanted:
                rows.append({**head, "metric": name, **{k: m.get(k) for k in ("mean", "std", "n", "band", "unit",
                                                                              "gated", "status")}})
    df = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    return df.with_columns(pl.col("time").str.to_datetime(time_zone="UTC", strict=False)).sort("time", "metric")
