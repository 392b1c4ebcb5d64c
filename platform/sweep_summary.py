"""End of a sweep: one polars table of every trial, saved as CSV + Parquet, printed, and
logged to the sweep's MLflow parent run."""
from __future__ import annotations

import json
import math
import os

import polars as pl

from search_spaces import SearchSpace
from search_spaces.budgets import Budget
from trainers.paths import mlflow_tracking_uri

COLUMNS = ("phase", "label", "trial", "status", "seed", "beta", "alpha", "routing", "weighting", "step", "fid",
           "precision", "recall", "is_mean", "feature_set", "num_samples", "images_per_s", "wall_s", "run_dir")


def _final_metrics(run_dir: str | None) -> dict:
    path = os.path.join(run_dir, "metrics.json") if run_dir else ""
    if path and os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def _rows(phase: str, grid) -> list[dict]:
    rows = []
    for result in grid:
        metrics = dict(result.metrics or {})
        run_dir = metrics.get("run_dir")
        final = _final_metrics(run_dir)
        cfg = final.get("config") or _checkpoint_config(run_dir)
        status = "error" if result.error else ("finished" if metrics.get("final") else "stopped")
        rows.append({
            "phase": phase, "label": metrics.get("label") or final.get("label", ""),
            "trial": metrics.get("trial_id", ""), "status": status,
            "seed": cfg.get("seed"), "beta": cfg.get("beta"), "alpha": cfg.get("alpha"),
            "routing": cfg.get("routing"), "weighting": cfg.get("weighting"), "step": metrics.get("step"),
            "fid": metrics.get("fid"), "precision": metrics.get("precision"), "recall": metrics.get("recall"),
            "is_mean": metrics.get("is_mean"), "feature_set": metrics.get("feature_set") or _fid_k_features(run_dir),
            "num_samples": metrics.get("num_samples"), "images_per_s": _median_throughput(run_dir),
            "wall_s": metrics.get("time_total_s"), "run_dir": run_dir,
        })
    return rows


def _checkpoint_config(run_dir: str | None) -> dict:
    """The config of a trial that ended before its final metrics (stopped early, or failed)."""
    from trainers.checkpoint import latest_checkpoint, read_checkpoint_config
    latest = latest_checkpoint(run_dir) if run_dir else None
    return read_checkpoint_config(latest).to_dict() if latest else {}


def _fid_k_features(run_dir: str | None) -> str | None:
    from trainers.tracking import read_metrics
    found = [r["feature_set"] for r in read_metrics(run_dir) if "fid_k" in r] if run_dir else []
    return found[-1] if found else None


def _median_throughput(run_dir: str | None) -> float | None:
    from trainers.tracking import read_metrics
    values = sorted(r["images_per_s"] for r in read_metrics(run_dir)[1:] if "images_per_s" in r) if run_dir else []
    return values[len(values) // 2] if values else None


def trials_table(grids: dict) -> pl.DataFrame:
    rows = [row for phase, grid in grids.items() for row in _rows(phase, grid)]
    schema = {c: (pl.Float64 if c in ("beta", "alpha", "fid", "precision", "recall", "is_mean", "images_per_s",
                                      "wall_s") else pl.Int64 if c in ("seed", "step", "num_samples") else pl.Utf8)
              for c in COLUMNS}
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


def summarise(space: SearchSpace, budget: Budget, sweep_dir: str, grids: dict, parent_run_id: str,
              wall_seconds: float) -> dict:
    import mlflow
    table = trials_table(grids)
    table.write_csv(os.path.join(sweep_dir, "trials.csv"))
    table.write_parquet(os.path.join(sweep_dir, "trials.parquet"))
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
    for row in table.filter(pl.col("status") != "finished").iter_rows(named=True):
        id_file = os.path.join(row["run_dir"] or "", "mlflow_run_id")
        if not os.path.exists(id_file):
            continue
        run_id = open(id_file).read().strip()
        current = client.get_run(run_id).info.status
        # a trial the scheduler stopped may have seen the stop as an exception (FAILED): Tune knows better
        if current == "RUNNING" or (row["status"] == "stopped" and current == "FAILED"):
            status = "FAILED" if row["status"] == "error" else "KILLED"
            client.set_tag(run_id, "ended_by", "error" if status == "FAILED" else "scheduler (early stop)")
            client.set_terminated(run_id, status=status)

