"""A sweep's records from all its sources, merged by trial name (a trial's directory name is
its MLflow run name):

- the trial directories (``records_files``): config, final metrics, per-step curves;
- Ray Tune (``tune_state``): status, error and last result of every trial Tune knows, from the
  saved experiment state or, in the driver, from the Tuners' results;
- MLflow (``mlflow_records``): the parent run's children fill values and trials the files lack.

``load_sweep`` gives a report's ``SweepRecords``; ``trials_table`` the table the sweep driver
saves as ``trials.csv`` / ``trials.parquet``.  A partial sweep gives rows with status
``running`` / ``stopped`` / ``error`` and null metrics, never an exception.
"""
from __future__ import annotations

import os

import polars as pl

from reports.mlflow_records import parent_run_id, records_from_mlflow
from reports.pareto import objectives_of
from reports.records_files import (
    csv_statuses,
    first_mtime,
    read_settings,
    read_trial_dir,
    trial_dirs,
    worker_alive,
)
from reports.schema import METRICS, STATUSES, SweepRecords, curves_frame, trials_frame
from reports.time_to_quality import with_time_to_quality
from reports.tune_state import apply_state, result_states, tune_states, unstarted_row


def records_from_dir(sweep_dir: str, tune_results: dict[str, dict] | None = None
                     ) -> tuple[list[dict], list[dict], dict[str, dict], dict]:
    """Rows, curve rows, configs and meta of a sweep directory alone (no MLflow).

    ``tune_results`` (trial id -> state, ``tune_state.result_states``) is the driver's word on
    its trials: it overrides the saved experiment state, and trial directories Tune knows
    nothing of (left by an interrupted driver before Tune saved its state) are left out."""
    rows, curves, configs = [], [], {}
    for run_dir in trial_dirs(sweep_dir):
        row, trial_curves, config = read_trial_dir(run_dir)
        rows.append(row)
        curves.extend(trial_curves)
        configs[row["name"]] = config
    states = {**tune_states(sweep_dir), **(tune_results or {})}
    if tune_results is not None:
        rows = [r for r in rows if r["trial"] in states]
        curves = [c for c in curves if c["name"] in {r["name"] for r in rows}]
    csv = csv_statuses(sweep_dir)
    for row in rows:
        if row["trial"] in states:
            apply_state(row, states[row["trial"]])
        elif row["trial"] in csv:
            row["status"] = csv[row["trial"]]
        elif row.get("status") != "finished":
            row["status"] = "running" if worker_alive(row["run_dir"]) else "stopped"
    seen = {r["trial"] for r in rows}
    rows += [unstarted_row(trial_id, state) for trial_id, state in states.items() if trial_id not in seen]
    extras = [c.get("extra") or {} for c in configs.values()]
    named = next((e for e in extras if e.get("space") and e.get("budget")), {})
    settings = read_settings(sweep_dir)
    meta = {"space": named.get("space") or settings.get("space"),
            "budget": named.get("budget") or settings.get("budget"),
            "started_s": first_mtime([r["run_dir"] for r in rows if r.get("run_dir")]),
            "settings": settings, "objectives": objectives_of(settings)}
    return rows, curves, configs, meta


def merge_rows(file_rows: list[dict], mlflow_rows: list[dict]) -> list[dict]:
    """File rows win; MLflow fills their missing values and adds trials the files lack.
    (MLflow run status is not trusted over Tune's for trials the files know, and final metrics
    are not filled into unfinished trials.)"""
    by_name = {r["name"]: r for r in file_rows}
    out = list(file_rows)
    for m in mlflow_rows:
        row = by_name.get(m["name"])
        if row is None:
            out.append(m)
            continue
        for key, value in m.items():
            if key in ("status", "source", "name", "trial") or value is None or row.get(key) is not None:
                continue
            if not (key in METRICS and row.get("status") != "finished"):
                row[key] = value
    return out


def _finish_rows(rows: list[dict]) -> list[dict]:
    for row in rows:
        row["status"] = row.get("status") if row.get("status") in STATUSES else "running"
        if not row.get("label"):
            row["label"] = row.get("baseline") or "unknown (no config yet)"
    return rows


def load_sweep(sweep_dir: str, *, use_mlflow: bool = True, tracking_uri: str | None = None) -> SweepRecords:
    """All records of a sweep (files first, MLflow to fill gaps unless ``use_mlflow`` is False)."""
    sweep_dir = os.path.abspath(sweep_dir)
    rows, curves, configs, meta = records_from_dir(sweep_dir)
    meta.update(sweep_dir=sweep_dir, parent_run_id=parent_run_id(sweep_dir), mlflow=False)
    if use_mlflow and meta["parent_run_id"]:
        with_curves = {c["name"] for c in curves}
        m_rows, m_curves, m_configs, m_meta = records_from_mlflow(sweep_dir, tracking_uri, skip_history=with_curves)
        if m_meta:
            meta["mlflow"] = True
            meta.update({**m_meta, "space": meta["space"] or m_meta.get("param_space"),
                         "budget": meta["budget"] or m_meta.get("param_budget")})
            # a sweep directory without sweep.json: the objectives its parent run logged
            meta["objectives"] = meta["objectives"] or objectives_of(
                {k: [v for v in (m_meta.get(f"param_{k}") or "").split(",") if v] for k in ("objectives", "modes")})
            rows = merge_rows(rows, m_rows)
            curves += m_curves
            configs = {**m_configs, **{k: v for k, v in configs.items() if v}}
    curves = curves_frame(curves)
    trials = with_time_to_quality(trials_frame(_finish_rows(rows)), curves)
    return SweepRecords(sweep_dir=sweep_dir, trials=trials, curves=curves, configs=configs, meta=meta)


def trials_table(sweep_dir: str, grids: dict | None = None) -> pl.DataFrame:
    """The sweep's trial table (TRIAL_SCHEMA, one row per trial Tune knows) from its directory;
    ``grids`` (phase -> the ``ResultGrid`` a Tuner returned) is the sweep driver's word on its
    trials.  The driver saves it as trials.csv; a report's ``load_sweep(...).trials`` is the same
    table with MLflow's records merged in.  Both carry ``steps_to_vanilla_fid_k`` and
    ``seconds_to_vanilla_fid_k`` (``time_to_quality.with_time_to_quality``) for MLflow."""
    rows, curves, _, _ = records_from_dir(os.path.abspath(sweep_dir), result_states(grids) if grids else None)
    return with_time_to_quality(trials_frame(_finish_rows(rows)), curves_frame(curves))
