"""Run logging: ``metrics.jsonl`` in the run directory and MLflow (params, stepped metrics,
artifacts, the training data as a dataset input, stepped images).  Only rank 0 logs."""
from __future__ import annotations

import json
import logging
import os

from trainers.config import RunConfig
from trainers.files import append_jsonl, atomic_write_text, read_jsonl
from trainers.paths import mlflow_tracking_uri
from trainers.training.tracking_sender import Sender, metric_batch, send

log = logging.getLogger(__name__)
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


RUN_CONFIG_FILE = "config.json"
CONFIG_TAG = "dtr.config"  # MLflow tag holding the full run config as JSON (params are limited in length)


def write_run_config(cfg: RunConfig) -> str:
    """``<run_dir>/config.json``: the resolved run config, written before training starts so that
    every trial directory (finished, stopped or failed) says what it ran."""
    return atomic_write_text(os.path.join(cfg.run_dir, RUN_CONFIG_FILE), cfg.to_json())


def read_run_config(run_dir: str) -> RunConfig | None:
    path = os.path.join(run_dir, RUN_CONFIG_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return RunConfig.from_dict(json.load(f))


class MetricsFile:
    """Append-only ``metrics.jsonl``; on resume, lines past the checkpoint step are dropped so
    the file always holds one trajectory."""

    def __init__(self, run_dir: str, resume_step: int | None = None):
        os.makedirs(run_dir, exist_ok=True)
        self.path = os.path.join(run_dir, "metrics.jsonl")
        if resume_step is None:
            open(self.path, "w").close()
        elif os.path.exists(self.path):
            kept = [r for r in read_jsonl(self.path, skip_bad=True) if r.get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict) -> None:
        append_jsonl(self.path, record)


def read_metrics(run_dir: str) -> list[dict]:
    return read_jsonl(os.path.join(run_dir, "metrics.jsonl"), skip_bad=True)


def ensure_experiment(name: str) -> str:
    """Id of MLflow experiment ``name``, created if missing.  With a local sqlite store its
    artifacts go under the run directory (MLflow's default would be ./mlruns of the cwd)."""
    import mlflow

    from trainers.paths import runs_dir
    uri = mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:"):
        location = "file://" + os.path.join(runs_dir(), "mlartifacts", name)
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another trial
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


class MlflowRun:
    """One MLflow run per training run (nested under ``parent_run_id`` when a sweep launched it).

    The run id is kept in ``<run_dir>/mlflow_run_id`` so a resumed run logs into the same run;
    a fresh start (no checkpoint to resume) gets a new MLflow run.
    """

    def __init__(self, cfg: RunConfig, *, parent_run_id: str | None = None, enabled: bool = True,
                 resuming: bool = False):
        self.enabled = enabled
        self.run_id = None
        if not enabled:
            return
        import mlflow
        self.mlflow = mlflow
        experiment_id = ensure_experiment(cfg.mlflow_experiment)
        id_file = os.path.join(cfg.run_dir, "mlflow_run_id")
        existing = open(id_file).read().strip() if resuming and os.path.exists(id_file) else None
        client = mlflow.MlflowClient()
        if existing:
            self.run_id = existing
        else:
            tags = {"mlflow.runName": cfg.run_name, "method": cfg.label()}
            if parent_run_id:
                tags["mlflow.parentRunId"] = parent_run_id
            run = client.create_run(experiment_id, tags=tags, run_name=cfg.run_name)
            self.run_id = run.info.run_id
            os.makedirs(cfg.run_dir, exist_ok=True)
            with open(id_file, "w") as f:
                f.write(self.run_id)
            # params for MLflow's search and compare views; the exact config is the tag and artifact
            params = [mlflow.entities.Param(k, json.dumps(v, sort_keys=True) if isinstance(v, dict) else str(v))
                      for k, v in cfg.to_dict().items()]
            config_json = json.dumps(cfg.to_dict(), sort_keys=True)
            long = sorted(p.key for p in params if len(p.value) > MAX_PARAM_CHARS)
            tags = {CONFIG_TAG: config_json, **source_tags(),
                    **({"dtr.params_left_out": f"{', '.join(long)}: longer than {MAX_PARAM_CHARS} characters; "
                        f"whole in the artifact {RUN_CONFIG_FILE} and the tag {CONFIG_TAG}"} if long else {})}
            client.log_batch(self.run_id, params=[p for p in params if len(p.value) <= MAX_PARAM_CHARS],
                             tags=[mlflow.entities.RunTag(k, v) for k, v in tags.items()])
            config_file = os.path.join(cfg.run_dir, RUN_CONFIG_FILE)
            if os.path.exists(config_file):
                client.log_artifact(self.run_id, config_file)
        self.client = client
        client.update_run(self.run_id, status="RUNNING")
        self.sender = Sender(client, self.run_id)  # from here on a server outage never stops the run
        self.monitor = _system_metrics(self.run_id, resuming=bool(existing))
        if not existing:
            self._log_dataset(cfg)

    @classmethod
    def new(cls, experiment: str, run_name: str, *, params: dict | None = None, tags: dict | None = None,
            enabled: bool = True) -> MlflowRun:
        """A fresh run in ``experiment`` tied to no RunConfig or run directory (the benchmark's one
        run per invocation); a tracker that does nothing when not ``enabled``."""
        self = cls.__new__(cls)
        self.enabled, self.run_id = enabled, None
        if not enabled:
            return self
        import mlflow
        experiment_id = ensure_experiment(experiment)  # first: it sets the tracking URI the client uses
        self.mlflow, self.client = mlflow, mlflow.MlflowClient()
        run = self.client.create_run(experiment_id, run_name=run_name,
                                     tags={"mlflow.runName": run_name, **(tags or {})})
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[mlflow.entities.Param(k, str(v)[:MAX_PARAM_CHARS])
                                                   for k, v in (params or {}).items()])
        self.sender = Sender(self.client, self.run_id)
        return self

    def log_metrics(self, metrics: dict, step: int) -> None:
        if not self.enabled:
            return
        batch = metric_batch(metrics, step)
        if batch:
            self._put("metrics", batch)

    def backfill(self, records: list[dict]) -> None:
        """Queue the records of earlier steps (a resumed run's metrics.jsonl) that MLflow lacks
        (tracking_sender.backfill); sent in the background, like every write."""
        if self.enabled and records:
            self._put("backfill", records)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        if self.enabled and os.path.exists(path):
            self._put("artifact", path, artifact_path)

    def log_image(self, image, key: str, step: int) -> None:
        """``image`` (an HxWx3 uint8 array) as MLflow's stepped image ``key`` at ``step``."""
        if self.enabled:
            self._put("image", image, key, int(step))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait (at most ``timeout`` s) until every write queued so far is sent; no wait while the
        server is known to be down.  Before a report Tune may answer with a stop that ends the
        process: what the step logged must be out by then.  Whether everything was sent."""
        if not self.enabled or self.sender is None or self.sender.down_since is not None:
            return False
        import threading
        sent = threading.Event()
        self.sender.put("mark", sent)
        return sent.wait(timeout)

    def _log_dataset(self, cfg: RunConfig) -> None:
        """The run's training data as an MLflow dataset input (trainers/training/dataset_input.py)."""
        from trainers.training.dataset_input import dataset_input
        try:
            self._put("inputs", [dataset_input(cfg)])
        except Exception as err:  # data that cannot be described still trains (the loader says why not)
            log.warning("the dataset input is not logged: %s: %s", type(err).__name__, err)

    def set_tags(self, tags: dict) -> None:
        if self.enabled and tags:
            self._put("tags", dict(tags))

    def _put(self, kind: str, *args) -> None:
        if self.sender is not None:
            self.sender.put(kind, *args)
        else:  # after finish: straight to the server, as before
            send(self.client, self.run_id, kind, *args)

    def finish(self, status: str = "FINISHED") -> None:
        """End the run with ``status`` once every queued write is sent (see tracking_sender.py)."""
        if self.enabled and self.sender is not None:
            if getattr(self, "monitor", None) is not None:
                self.monitor.finish()
                self.monitor = None
            self.sender.put("status", status)
            self.sender.close()
            self.sender = None


def source_tags() -> dict:
    """MLflow's source tags of this checkout: ``mlflow.source.git.commit`` (and branch, repo URL),
    ``dtr.git_dirty`` (uncommitted changes); {} outside a git checkout or without git."""
    import subprocess

    from trainers.paths import PROJECT_ROOT

    def git(*args) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no")
    tags = {"mlflow.source.git.commit": commit, "mlflow.source.type": "LOCAL",
            "dtr.git_dirty": str(bool(status)).lower() if status is not None else "unknown"}
    branch, url = git("rev-parse", "--abbrev-ref", "HEAD"), git("config", "--get", "remote.origin.url")
    tags.update({k: v for k, v in (("mlflow.source.git.branch", branch), ("mlflow.source.git.repoURL", url)) if v})
    return tags


def _system_metrics(run_id: str, resuming: bool):
    """MLflow's system-metrics monitor (``system/cpu_utilization_percentage``, memory, disk, network,
    GPU when pynvml is there) on the run, sampled every ``$DTR_SYSTEM_METRICS_INTERVAL`` s (10);
    None without psutil or with ``DTR_SYSTEM_METRICS=0``."""
    if os.environ.get("DTR_SYSTEM_METRICS", "1") == "0":
        return None
    try:
        import psutil  # noqa: F401  (MLflow's CPU/memory monitors need it)
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        interval = float(os.environ.get("DTR_SYSTEM_METRICS_INTERVAL", "10"))
        monitor = SystemMetricsMonitor(run_id, sampling_interval=interval, resume_logging=resuming,
                                       tracking_uri=mlflow_tracking_uri())
        monitor.start()
        return monitor
    except Exception as err:  # never fail a run for its monitor
        log.warning("system metrics are not logged: %s", err)
        return None
