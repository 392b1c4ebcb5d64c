"""Where runs, caches and the default MLflow store live."""
from __future__ import annotations

import os

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def runs_dir() -> str:
    """``$DTR_RUNS_DIR`` or ``<repo>/runs``: the project's run directory."""
    return os.path.abspath(os.environ.get("DTR_RUNS_DIR", os.path.join(PROJECT_ROOT, "runs")))


def cache_dir() -> str:
    return os.path.abspath(os.environ.get("DTR_CACHE_DIR", os.path.join(runs_dir(), "cache")))


def mlflow_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` or a sqlite file under the run directory (MLflow 3 refuses file stores)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    os.makedirs(runs_dir(), exist_ok=True)
    return "sqlite:///" + os.path.join(runs_dir(), "mlflow.db")


def bench_history_path() -> str:
    """``<runs>/bench/history.jsonl``: one line per benchmark invocation (written by platform.bench)."""
    return os.path.join(runs_dir(), "bench", "history.jsonl")
