"""The sweep's MLflow records: the child runs of its parent run (read), and the report (uploaded).

The parent run's id is in ``<sweep_dir>/mlflow_parent_run_id``; its children carry the tag
``mlflow.parentRunId``.  A child's config is its ``dtr.config`` tag (the full run config as
JSON; MLflow params are cut at a length limit, so they are never read back as the config).
Everything here gives up quietly (empty records, False) when the store is unreachable.
"""
from __future__ import annotations

import contextlib
import json
import os

from reports.schema import METRICS, config_row, label_of, trial_id_of
from trainers.training.tracking import CONFIG_TAG

_MLFLOW_STATUS = {"RUNNING": "running", "SCHEDULED": "running", "FINISHED": "finished", "FAILED": "error",
                  "KILLED": "stopped"}


@contextlib.contextmanager
def quick_mlflow_http():
    """Fail fast instead of retrying for minutes when an MLflow server is unreachable."""
    defaults = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    added = {k: v for k, v in defaults.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def parent_run_id(sweep_dir: str) -> str | None:
    try:
        with open(os.path.join(sweep_dir, "mlflow_parent_run_id")) as f:
            return f.read().strip() or None
    except OSError:
        return None


def mlflow_reachable(uri: str) -> bool:
    """False for a sqlite store whose file does not exist (opening it would create an empty one)."""
    if uri.startswith("sqlite:///"):
        return os.path.exists(uri[len("sqlite:///"):])
    return True


def mlflow_client(tracking_uri: str | None = None):
    """An MlflowClient for ``tracking_uri`` (default: the project's), or None if unusable."""
    from trainers.paths import mlflow_tracking_uri
    uri = tracking_uri or mlflow_tracking_uri()
    if not mlflow_reachable(uri):
        return None
    try:
        import mlflow
        return mlflow.MlflowClient(tracking_uri=uri)
    except Exception:
        return None


def run_config(tags: dict) -> dict:
    """A child run's config from its ``dtr.config`` tag ({} without one)."""
    try:
        config = json.loads(tags.get(CONFIG_TAG) or "{}")
    except ValueError:
        return {}
    return config if isinstance(config, dict) else {}


def _child_row(child) -> tuple[dict, dict]:
    name = child.info.run_name or child.data.tags.get("mlflow.runName") or child.info.run_id
    metrics, tags = child.data.metrics, child.data.tags
    config = run_config(tags)
    row = {**config_row(config), "name": name, "trial": trial_id_of(name), "source": "mlflow",
           "mlflow_run_id": child.info.run_id, "status": _MLFLOW_STATUS.get(child.info.status, "running"),
           "feature_set": tags.get("feature_set") or None, "fid_protocol": tags.get("fid_protocol") or None,
           **{m: metrics.get(m) for m in (*METRICS, "num_samples", "fid_k", "images_per_s")}}
    row["label"] = tags.get("method") or (label_of(config) if config else None)
    return row, config


def records_from_mlflow(sweep_dir: str, tracking_uri: str | None = None, *,
                        skip_history: set[str] = frozenset()) -> tuple[list[dict], list[dict], dict, dict]:
    """Rows, fid_k curve rows (except for run names in ``skip_history``), configs (run name ->
    config) and meta (parent params, start time) from the sweep's MLflow parent run; all empty
    when unreachable."""
    parent = parent_run_id(sweep_dir)
    if not parent:
        return [], [], {}, {}
    with quick_mlflow_http():
        client = mlflow_client(tracking_uri)
        if client is None:
            return [], [], {}, {}
        try:
            run = client.get_run(parent)
            children = client.search_runs([run.info.experiment_id],
                                          filter_string=f"tags.mlflow.parentRunId = '{parent}'",
                                          max_results=5000)
        except Exception:
            return [], [], {}, {}
        meta = {"parent_run_id": parent, "parent_start_ms": run.info.start_time,
                "parent_status": run.info.status, **{f"param_{k}": v for k, v in run.data.params.items()}}
        rows, curves, configs = [], [], {}
        for child in children:
            row, config = _child_row(child)
            rows.append(row)
            if config:
                configs[row["name"]] = config
            if row["name"] not in skip_history:
                with contextlib.suppress(Exception):
                    for point in client.get_metric_history(child.info.run_id, "fid_k"):
                        curves.append({"name": row["name"], "step": point.step, "fid_k": point.value})
        return rows, curves, configs, meta


def log_report_to_mlflow(sweep_dir: str, paths: list[str], tracking_uri: str | None = None) -> bool:
    """Log files and folders to the sweep's MLflow parent run under ``report/``; False (never
    raises) when there is no parent run or the store is unreachable."""
    parent = parent_run_id(sweep_dir)
    if not parent:
        return False
    with quick_mlflow_http():
        try:
            client = mlflow_client(tracking_uri)
            if client is None:
                return False
            client.get_run(parent)
            for path in paths:
                if os.path.isdir(path):
                    client.log_artifacts(parent, path, artifact_path=f"report/{os.path.basename(path)}")
                elif os.path.exists(path):
                    client.log_artifact(parent, path, artifact_path="report")
        except Exception:
            return False
    return True
