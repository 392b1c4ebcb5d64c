"""The sweep's best trial as an MLflow model on the parent run, logged by the driver when a sweep ends.

The model is the trial's EMA weights from its final checkpoint (``load_ema_model``), logged with
``mlflow.pytorch.log_model`` as the LoggedModel ``best_ema_model`` of the parent run's experiment
(pickled: ``mlflow.pytorch.load_model`` needs this project installed, ``pip install -e .``, for the
model classes; load it only from a store you trust).  The trial's RunConfig (``config.json``)
goes inside the model (``extra_files``) and beside it as the parent run's artifact
``best_model/config.json``; the parent run's tags ``dtr.best_model`` (the ``models:/`` URI) and
``dtr.best_trial`` point at it.  A failure here is one warning line: the sweep's results stand.
"""
from __future__ import annotations

import json
import logging
import os

import polars as pl

MODEL_NAME = "best_ema_model"


def best_row(table: pl.DataFrame, metric: str, mode: str) -> dict | None:
    """The finished trial with the best final ``metric`` (None when no trial has one)."""
    if metric not in table.columns:
        return None
    done = table.filter((pl.col("status") == "finished") & pl.col(metric).is_not_null() & pl.col(metric).is_finite())
    return done.sort(metric, descending=mode == "max").row(0, named=True) if done.height else None


def log_best_model(client, parent_run_id: str, row: dict, metric: str) -> str | None:
    """Log ``row``'s EMA model on the parent run; its ``models:/`` URI, or None (with one warning
    line) when it has no loadable checkpoint or MLflow refused it."""
    try:
        return _log(client, parent_run_id, row, metric)
    except Exception as err:  # the sweep's results are saved; the model can be logged again by rerunning
        print(f"warning: the best trial's model was not logged to MLflow ({type(err).__name__}: "
              f"{str(err).splitlines()[0] if str(err) else ''})", flush=True)
        return None


def _log(client, parent_run_id: str, row: dict, metric: str) -> str:
    parent = client.get_run(parent_run_id)
    tags = parent.data.tags
    if tags.get("dtr.best_trial") == row["name"] and tags.get("dtr.best_model"):  # a resume with the same best
        print(f"best trial's EMA model: {tags['dtr.best_model']} ({row['name']}, as before)", flush=True)
        return tags["dtr.best_model"]
    import mlflow.pytorch
    import torch

    from trainers.training.checkpoint import load_ema_model
    from trainers.training.tracking import RUN_CONFIG_FILE
    model, cfg, checkpoint = load_ema_model(row["run_dir"])
    config_path = os.path.join(row["run_dir"], RUN_CONFIG_FILE)
    if not os.path.exists(config_path):
        config_path = os.path.join(checkpoint, "config.json")
    value = row[metric]
    logged = client.create_logged_model(
        parent.info.experiment_id, name=MODEL_NAME, source_run_id=parent_run_id,
        params={k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else str(v)
                for k, v in cfg.to_dict().items() if len(str(v)) <= 6000},
        tags={"trial": row["name"], "label": str(row.get("label") or cfg.label()), metric: f"{value:.6g}",
              "checkpoint": checkpoint, "trial_run_id": str(row.get("mlflow_run_id") or "")})
    quiet = logging.getLogger("mlflow.pytorch")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its pickle-format note; the module docstring and docs/ say it once
    try:
        info = mlflow.pytorch.log_model(
            model, name=MODEL_NAME, model_id=logged.model_id, run_id=parent_run_id, serialization_format="pickle",
            extra_files=[config_path],
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    finally:
        quiet.setLevel(level)
    client.log_artifact(parent_run_id, config_path, artifact_path="best_model")
    client.set_tag(parent_run_id, "dtr.best_model", info.model_uri)
    client.set_tag(parent_run_id, "dtr.best_trial", row["name"])
    print(f"best trial's EMA model: {info.model_uri} ({row['name']}, {metric} {value:.4g}; "
          f"mlflow.pytorch.load_model loads it)", flush=True)
    return info.model_uri
