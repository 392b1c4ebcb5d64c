"""MLflow writes of a training run, sent in order from a background thread and kept across a
tracking-server outage.

A trial never waits for, or fails on, the tracking server: ``put`` queues a write (metrics,
tags, an artifact, the final status) and returns.  A write that fails with a server or
connection error (HTTP 5xx, connection refused, timeout) is retried every
``$DTR_MLFLOW_RETRY_S`` seconds (5) until it goes through, so everything logged during an
outage reaches MLflow once the server is back; one warning line says the server went away and
one that it came back.  A write the server rejects (HTTP 4xx) is dropped with a warning.
``close`` waits up to ``$DTR_MLFLOW_FINISH_WAIT_S`` seconds (120) for the queue to drain; what
is still unsent then is named in one warning (metrics.jsonl has every value regardless).
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time

log = logging.getLogger(__name__)


def _transient(err: Exception) -> bool:
    from mlflow.exceptions import MlflowException
    return not isinstance(err, MlflowException) or err.get_http_status_code() >= 500


def send(client, run_id: str, kind: str, *args) -> None:
    """One write: ``metrics`` (a list of Metric), ``tags`` (a dict), ``artifact`` (path, artifact
    path), ``image`` (array, key, step), ``inputs`` (dataset inputs), ``backfill`` (metrics.jsonl
    records, see ``backfill``) or ``status`` (the final status)."""
    from mlflow.entities import RunTag
    if kind == "metrics":
        client.log_batch(run_id, metrics=args[0])
    elif kind == "tags":
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in args[0].items()])
    elif kind == "artifact":
        client.log_artifact(run_id, *args)
    elif kind == "status":
        client.set_terminated(run_id, status=args[0])
    elif kind == "image":  # (image array, key, step): MLflow's stepped images (the UI's slider)
        client.log_image(run_id, args[0], key=args[1], step=args[2])
    elif kind == "inputs":  # a list of DatasetInput
        client.log_inputs(run_id, datasets=args[0])
    elif kind == "backfill":  # metrics.jsonl's records up to a resumed run's checkpoint
        backfill(client, run_id, args[0])
    elif kind == "mark":  # no write: a threading.Event set once every write queued before it is sent
        args[0].set()
    else:
        raise ValueError(f"unknown MLflow write {kind!r}")


def metric_batch(metrics: dict, step: int, timestamp_ms: int | None = None) -> list:
    """MLflow Metrics of ``step`` for the numeric values of ``metrics`` (others are left out)."""
    from mlflow.entities import Metric
    now = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    return [Metric(k, float(v), now, int(step)) for k, v in metrics.items() if isinstance(v, (int, float))]


def backfill(client, run_id: str, records: list[dict]) -> int:
    """Log what ``records`` (metrics.jsonl) hold and the run's MLflow history lacks: the writes a
    process killed outright (SIGKILL, a lost node) had queued but not sent.  A training record
    counts as sent when its step has a ``loss``, a FID-k record when its step has a ``fid_k``; a
    missing one is logged whole, as the loop logged it.  Returns how many metrics it logged."""
    sent = {key: {m.step for m in client.get_metric_history(run_id, key)} for key in ("loss", "fid_k")}
    now = int(time.time() * 1000)
    missing = []
    for record in records:
        step = record.get("step")
        if "loss" in record and step not in sent["loss"]:
            missing += metric_batch({k: v for k, v in record.items() if k != "step"}, step, now)
        elif "fid_k" in record and "loss" not in record and step not in sent["fid_k"]:
            missing += metric_batch({"fid_k": record["fid_k"]}, step, now)
    for start in range(0, len(missing), 1000):  # MLflow's limit on metrics per log_batch
        client.log_batch(run_id, metrics=missing[start:start + 1000])
    if missing:
        log.warning("run %s: %d metrics of earlier steps were missing in MLflow and are logged now", run_id,
                    len(missing))
    return len(missing)


class Sender:
    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id
        self.retry_s = float(os.environ.get("DTR_MLFLOW_RETRY_S", "5"))
        self.down_since: float | None = None
        self._queue: queue.Queue = queue.Queue()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mlflow-{run_id[:8]}", daemon=True)
        self._thread.start()

    def put(self, kind: str, *args) -> None:
        self._queue.put((kind, args))

    def _send(self, kind: str, args: tuple) -> None:
        send(self.client, self.run_id, kind, *args)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            while True:
                try:
                    self._send(*item)
                except Exception as err:
                    if not _transient(err):
                        log.warning("MLflow rejected a %s write of run %s, dropped: %s", item[0], self.run_id,
                                    str(err).splitlines()[0][:300])
                        break
                    if self.down_since is None:
                        self.down_since = time.monotonic()
                        log.warning("MLflow is unreachable (%s); run %s keeps training and buffers its metrics, "
                                    "retrying every %g s", str(err).splitlines()[0][:200], self.run_id, self.retry_s)
                    if self._closing.wait(self.retry_s):  # close() gave up on the server
                        return
                    continue
                if self.down_since is not None:
                    log.warning("MLflow is reachable again after %.1f s; the buffered writes of run %s are sent",
                                time.monotonic() - self.down_since, self.run_id)
                    self.down_since = None
                break

    def close(self) -> int:
        """Send everything queued (waiting while the server is down, up to the finish wait); the
        number of writes left unsent."""
        self._queue.put(None)
        self._thread.join(float(os.environ.get("DTR_MLFLOW_FINISH_WAIT_S", "120")))
        if not self._thread.is_alive():
            return 0
        self._closing.set()
        left = self._queue.qsize()  # the write in flight is not in the queue any more; the sentinel is
        log.warning("MLflow stayed unreachable: %d writes of run %s were not sent (metrics.jsonl has every value)",
                    left, self.run_id)
        return left
