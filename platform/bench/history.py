"""Benchmark history: one JSON line per bench invocation in ``runs/bench/history.jsonl``
(trainers.paths.bench_history_path), besides the MLflow run in the ``benchmarks`` experiment.

A line is :func:`invocation_record`: the invocation's fields (time, run_id, wall_s, suite,
scale, rounds, warmup, git_commit, host, cpus, torch, threads, engine, device, clock,
contention), ``result`` ("ok" / "regression"), ``metrics`` (per metric its summary and its
verdict against the baseline) and ``claims``.  Trend plots read it as a polars frame through
reports.bench_history::

    from platform.bench.history import read_history
    from reports.bench_history import history_rows
    df = history_rows(read_history(), metrics=["dtr_step_ratio", "rtr_step_ratio"])
    # one row per (invocation, metric): time, metric, mean, band, std, n, unit, status, ...
"""
from __future__ import annotations

from platform.bench.gate import json_safe
from platform.bench.judge import BenchResult, verdict_fields
from trainers.files import append_jsonl, read_jsonl
from trainers.paths import bench_history_path


def invocation_record(head: dict, result: BenchResult) -> dict:
    """One history line: the invocation's ``head`` fields, then its result, metrics and claims (plain JSON)."""
    return json_safe({**head, "result": "regression" if result.exit_code else "ok",
                      "metrics": {st.name: {**st.summary(), **verdict_fields(v)}
                                  for st, v in zip(result.stats, result.verdicts)},
                      "claims": [c.__dict__ for c in result.claims]})


def append_history(record: dict, path: str | None = None) -> str:
    """Append one invocation's record (default: trainers.paths.bench_history_path()); returns the path."""
    path = path or bench_history_path()
    append_jsonl(path, record)
    return path


def read_history(path: str | None = None) -> list[dict]:
    """The records, oldest first ([] without a history); a line cut short by a killed run is skipped."""
    return read_jsonl(path or bench_history_path(), skip_bad=True)
