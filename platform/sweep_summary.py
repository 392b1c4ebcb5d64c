"""End of a sweep: the trial table (``reports.records.trials_table``, with Tune's results as the
word on each trial) saved as CSV + Parquet, printed, logged to the sweep's MLflow parent run
(whose unfinished child runs are closed), and the sweep's report built.

In trials.csv / .parquet the last FID-k of a trial is the column ``fid_k_last`` (the table's
``fid_k``), so that it is never read as ``fid``: ``fid`` is the final evaluation's FID only, null
for a trial ASHA stopped.

The parent run also gets the best trial's EMA model (platform/best_model.py) and the tag
``dtr.report``: where the report is, in its artifacts (``report/report.html``) and on disk."""
from __future__ import annotations

import math
import os

import polars as pl

from platform.best_model import best_row, log_best_model
from reports.console import console_summary
from reports.records import trials_table
from search_spaces import SearchSpace
from search_spaces.budgets import Budget
from trainers.files import atomic_path
from trainers.paths import mlflow_tracking_uri


def summarise(space: SearchSpace, budget: Budget, sweep_dir: str, grids: dict, parent_run_id: str,
              wall_seconds: float) -> dict:
    import mlflow
    table = with_searched_columns(trials_table(sweep_dir, grids), list(space.params))
    saved = table.rename({"fid_k": "fid_k_last"})
    with atomic_path(os.path.join(sweep_dir, "trials.csv")) as tmp:
        saved.write_csv(tmp)
    with atomic_path(os.path.join(sweep_dir, "trials.parquet")) as tmp:
        saved.write_parquet(tmp)
    summary, best = console_summary(table, metric=space.metric, mode=space.mode, baselines=list(space.baselines))
    print(f"\n=== sweep {space.name} ({budget.name}) — {table.height} trials in {wall_seconds / 60:.1f} min ===")
    print(summary, flush=True)
    for line in searched_lines(table, list(space.params), sweep_dir):
        print(line, flush=True)
    mlflow.set_tracking_uri(mlflow_tracking_uri())
    client = mlflow.MlflowClient()
    client.log_artifact(parent_run_id, os.path.join(sweep_dir, "trials.csv"))
    if best and isinstance(best[f"{space.metric}_mean"], float) and math.isfinite(best[f"{space.metric}_mean"]):
        client.log_metric(parent_run_id, f"best_{space.metric}", best[f"{space.metric}_mean"])
    _log_time_to_quality(client, table)
    client.log_metric(parent_run_id, "sweep_wall_s", wall_seconds)
    _close_unfinished_child_runs(client, table)
    metric, mode = _first_objective(sweep_dir)
    row = best_row(table, metric, mode)
    if row is not None:
        log_best_model(client, parent_run_id, row, metric)
    errors = table.filter(pl.col("status") == "error").height
    client.set_terminated(parent_run_id, status="FAILED" if errors == table.height and errors else "FINISHED")
    report = _build_report(sweep_dir)
    if report:
        client.set_tag(parent_run_id, "dtr.report", f"report/{os.path.basename(report)} (artifact); {report}")
    return {"sweep_dir": sweep_dir, "table": table, "best": best, "errors": errors, "report": report}


def with_searched_columns(table: pl.DataFrame, params: list[str]) -> pl.DataFrame:
    """``table`` with a column for every searched parameter (the trial table carries the usual
    config fields; any other one comes from each trial's config.json, null where it has none)."""
    import json
    missing = [p for p in params if p not in table.columns]
    if not missing or not table.height:
        return table
    values = {p: [] for p in missing}
    for run_dir in table["run_dir"].to_list():
        path = os.path.join(run_dir or "", "config.json")
        config = json.load(open(path)) if run_dir and os.path.exists(path) else {}
        for p in missing:
            value = config.get(p)
            values[p].append(json.dumps(value) if isinstance(value, (dict, list)) else value)
    return table.with_columns([pl.Series(p, v, strict=False) for p, v in values.items()])


def _first_objective(sweep_dir: str) -> tuple[str, str]:
    """(metric, mode) of the sweep's first objective (sweep.json; FID by default)."""
    from reports.pareto import objectives_of
    from reports.records_files import read_settings
    return (objectives_of(read_settings(sweep_dir)) or [("fid", "min")])[0]


def shown_params(row: dict, params: list[str]) -> list[str]:
    """``name=value`` of each searched parameter that applies to the row's method (a vanilla model
    has no beta, DTR no Switch-DiT prior weight: reports.methods.method_params)."""
    from reports.methods import METHOD_FIELDS, method_params
    relevant = method_params(row)
    shown = []
    for p in params:
        if p not in row or (p in METHOD_FIELDS and relevant[p] is None):
            continue
        shown.append(f"{p}={row[p]:.4g}" if isinstance(row[p], float) else f"{p}={row[p]}")
    return shown


def searched_lines(table: pl.DataFrame, params: list[str], sweep_dir: str) -> list[str]:
    """``best trial by fid: 12.3, <name> (DTR) with beta=0.75`` (the space's searched parameters
    that apply to that trial's method) and, for a multi-objective sweep, its Pareto front."""
    from reports.pareto import objectives_of, pareto_front
    from reports.records_files import read_settings
    objectives = objectives_of(read_settings(sweep_dir)) or [("fid", "min")]
    metric, mode = objectives[0]
    top = best_row(table, metric, mode)
    if top is None:
        return []

    def with_params(row: dict) -> str:
        return f"{row['name']} ({row['label']}) with {', '.join(shown_params(row, params)) or 'no searched parameters'}"

    lines = [f"best trial by {metric}: {top[metric]:.4g}, {with_params(top)}"]
    if len(objectives) > 1:
        front = pareto_front(table, objectives)
        lines.append(f"Pareto front over {', '.join(f'{m} ({d})' for m, d in objectives)}: {front.height} trial(s)")
        for row in front.iter_rows(named=True):
            values = ", ".join(f"{m} {row[m]:.4g}" for m, _ in objectives)
            lines.append(f"  {values}: {with_params(row)}")
    return lines


def _build_report(sweep_dir: str) -> str | None:
    """The HTML/Markdown report; a failure here is printed but never fails the sweep."""
    try:
        from reports import build_report
        paths = build_report(sweep_dir, log_to_mlflow=True)
    except Exception as err:  # the sweep's results are already saved; the report can be rebuilt
        print(f"warning: the report could not be built ({type(err).__name__}: {err}); "
              f"retry with: python -m reports {sweep_dir}", flush=True)
        return None
    print(f"report: {paths['html']}", flush=True)
    return paths["html"]


def _log_time_to_quality(client, table: pl.DataFrame) -> None:
    """Each trial's steps / seconds to vanilla's final FID-k (reports.time_to_quality) on its MLflow run."""
    for row in table.filter(pl.col("mlflow_run_id").is_not_null()).iter_rows(named=True):
        for key in ("steps_to_vanilla_fid_k", "seconds_to_vanilla_fid_k"):
            if row[key] is not None:
                client.log_metric(row["mlflow_run_id"], key, float(row[key]))


def _close_unfinished_child_runs(client, table: pl.DataFrame) -> None:
    """Trials that Tune stopped early (ASHA) or that errored end without closing their MLflow
    run; mark those runs KILLED / FAILED so the UI does not show them as running forever."""
    unfinished = table.filter((pl.col("status") != "finished") & pl.col("mlflow_run_id").is_not_null())
    for row in unfinished.iter_rows(named=True):
        run_id = row["mlflow_run_id"]
        current = client.get_run(run_id).info.status
        # a trial the scheduler stopped may have seen the stop as an exception (FAILED): Tune knows better;
        # a trial whose final FID diverged closed its run FINISHED before the FID was judged
        if current == "RUNNING" or (row["status"] == "stopped" and current == "FAILED") or \
                (row["status"] == "error" and current == "FINISHED"):
            status = "FAILED" if row["status"] == "error" else "KILLED"
            client.set_tag(run_id, "ended_by", "error" if status == "FAILED" else "scheduler (early stop)")
            client.set_terminated(run_id, status=status)

