"""End of a sweep: the trial table (``reports.records.trials_table``, with Tune's results as the
word on each trial) saved as CSV + Parquet, printed, logged to the sweep's MLflow parent run
(whose unfinished child runs are closed), and the sweep's report built."""
from __future__ import annotations

import math
import os

import polars as pl

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
    finished = table.filter((pl.col("status") == "finished") & pl.col(space.metric).is_not_null())
    search = finished.filter(pl.col("phase") == "search")
    best = None
    if search.height:
        best = search.sort(space.metric, descending=space.mode == "max").row(0, named=True)
    with pl.Config(tbl_rows=50, tbl_cols=12, tbl_width_chars=160, float_precision=3):
        print(f"\n=== sweep {space.name} ({budget.name}) — {table.height} trials in {wall_seconds / 60:.1f} min ===")
        print(table.select("phase", "label", "status", "beta", "alpha", space.metric, "precision", "recall",
                           "images_per_s", "feature_set"))
        if best:
            print(f"best: {best['label']} beta={best['beta']} alpha={best['alpha']} "
                  f"{space.metric}={best[space.metric]:.3f} ({best['feature_set']} features)")
        for row in finished.filter(pl.col("phase") == "baselines").iter_rows(named=True):
            print(f"baseline {row['label']}: {space.metric}={row[space.metric]:.3f}")
    mlflow.set_tracking_uri(mlflow_tracking_uri())
    client = mlflow.MlflowClient()
    client.log_artifact(parent_run_id, os.path.join(sweep_dir, "trials.csv"))
    if best and isinstance(best[space.metric], float) and math.isfinite(best[space.metric]):
        client.log_metric(parent_run_id, f"best_{space.metric}", best[space.metric])
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

