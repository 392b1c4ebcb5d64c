"""End of a sweep: the trial table (``reports.records.trials_table``, with Tune's results as the
word on each trial) saved as CSV + Parquet, printed, logged to the sweep's MLflow parent run
(whose unfinished child runs are closed), and the sweep's report built.

In trials.csv / .parquet the last FID-k of a trial is the column ``fid_k_last`` (the table's
``fid_k``), so that it is never read as ``fid``: ``fid`` is the final evaluation's FID only, null
for a trial ASHA stopped."""
from __future__ import annotations

import math
import os

import polars as pl

from reports.console import console_summary
from reports.records import trials_table
from search_spaces import SearchSpace
from search_spaces.budgets import Budget
from trainers.files import atomic_path
from trainers.paths import mlflow_tracking_uri


def summarise(space: SearchSpace, budget: Budget, sweep_dir: str, grids: dict, parent_run_id: str,
              wall_seconds: float) -> dict:
    import mlflow
    table = trials_table(sweep_dir, grids)
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
    errors = table.filter(pl.col("status") == "error").height
    client.set_terminated(parent_run_id, status="FAILED" if errors == table.height and errors else "FINISHED")
    report = _build_report(sweep_dir)
    return {"sweep_dir": sweep_dir, "table": table, "best": best, "errors": errors, "report": report}


def searched_lines(table: pl.DataFrame, params: list[str], sweep_dir: str) -> list[str]:
    """``best trial: <name> FID 12.3 with routing=dtr, routing_clusters=4`` (the space's searched
    parameters, whatever they are) and, for a multi-objective sweep, its Pareto front."""
    from reports.pareto import objectives_of, pareto_front
    from reports.records_files import read_settings
    objectives = objectives_of(read_settings(sweep_dir)) or [("fid", "min")]
    metric, mode = objectives[0]
    done = table.filter((pl.col("status") == "finished") & pl.col(metric).is_not_null())
    if not done.height:
        return []

    def with_params(row: dict) -> str:
        shown = [f"{p}={row[p]:.4g}" if isinstance(row.get(p), float) else f"{p}={row.get(p)}"
                 for p in params if p in row]
        return f"{row['name']} ({row['label']}) with {', '.join(shown) or 'no searched parameters'}"

    top = done.sort(metric, descending=mode == "max").row(0, named=True)
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

