"""End of a sweep: the trial table (``reports.records.trials_table``, with Tune's results as the
word on each trial) saved as CSV + Parquet, printed, logged to the sweep's MLflow parent run
(whose unfinished child runs are closed), and the sweep's report built."""
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
    with atomic_path(os.path.join(sweep_dir, "trials.csv")) as tmp:
        table.write_csv(tmp)
    with atomic_path(os.path.join(sweep_dir, "trials.parquet")) as tmp:
        table.write_parquet(tmp)
    summary, best = console_summary(table, metric=space.metric, mode=space.mode, baselines=list(space.baselines))
    print(f"\n=== sweep {space.name} ({budget.name}) — {table.height} trials in {wall_seconds / 60:.1f} min ===")
    print(summary, flush=True)
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
        # a trial the scheduler stopped may have seen the stop as an exception (FAILED): Tune knows better
        if current == "RUNNING" or (row["status"] == "stopped" and current == "FAILED"):
            status = "FAILED" if row["status"] == "error" else "KILLED"
            client.set_tag(run_id, "ended_by", "error" if status == "FAILED" else "scheduler (early stop)")
            client.set_terminated(run_id, status=status)

