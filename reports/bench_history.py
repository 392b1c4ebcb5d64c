"""The speed benchmark's history as a long frame: one row per (invocation, metric), oldest first.

The history is ``<runs>/bench/history.jsonl`` (``trainers.paths.bench_history_path``), one
JSON record per ``python -m platform.bench`` invocation: ``time`` (ISO 8601), ``run_id``,
``suite``, ``scale``, ``git_commit``, ``host``, ``device``, ``threads``, ``engine``, ``result``
and ``metrics`` = {name: {mean, std, n, band, unit, gated, status, ...}}.  This module only
turns those records into a frame; reading the file is the caller's edge::

    history_rows(read_jsonl(bench_history_path(), skip_bad=True), scale="full")
"""
from __future__ import annotations

import polars as pl

HEAD_COLUMNS = {"time": pl.Utf8, "run_id": pl.Utf8, "suite": pl.Utf8, "scale": pl.Utf8, "git_commit": pl.Utf8,
                "host": pl.Utf8, "device": pl.Utf8, "threads": pl.Int64, "engine": pl.Utf8, "result": pl.Utf8}
METRIC_COLUMNS = {"mean": pl.Float64, "std": pl.Float64, "n": pl.Int64, "band": pl.Float64, "unit": pl.Utf8,
                  "gated": pl.Boolean, "status": pl.Utf8}
SCHEMA = {**HEAD_COLUMNS, "metric": pl.Utf8, **METRIC_COLUMNS}


def history_rows(records: list[dict], metrics=None, scale: str | None = None,
                 suite: str | None = None) -> pl.DataFrame:
    """One row per (invocation, metric) of the history ``records``, sorted by time then metric.

    ``time`` is a UTC datetime; ``status`` is the metric's verdict against the baseline of that
    day (ok / REGRESSION / better / new / changed / info / unbanded); ``result`` the
    invocation's.  Filters: ``metrics`` (names), ``scale`` ("full"/"tiny"), ``suite``
    ("speed"/"quality"/"all").  Records that are not dicts are skipped."""
    wanted = set(metrics) if metrics else None
    rows = []
    for rec in records:
        if not isinstance(rec, dict) or (scale and rec.get("scale") != scale) or (suite and rec.get("suite") != suite):
            continue
        head = {k: rec.get(k) for k in HEAD_COLUMNS}
        for name, values in (rec.get("metrics") or {}).items():
            if (wanted is None or name in wanted) and isinstance(values, dict):
                rows.append({**head, "metric": name, **{k: values.get(k) for k in METRIC_COLUMNS}})
    frame = pl.DataFrame(rows, schema=SCHEMA, strict=False) if rows else pl.DataFrame(schema=SCHEMA)
    return frame.with_columns(pl.col("time").str.to_datetime(time_zone="UTC", strict=False)).sort("time", "metric")
