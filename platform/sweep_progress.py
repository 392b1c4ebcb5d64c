"""A sweep phase's live progress: the console line
``[sweep] search: 3/8 trials done, 2 running, 3 queued; ETA ~6 min`` when a trial ends, and the
same numbers as metrics of the sweep's MLflow parent run (``trials_done``, ``trials_running``,
``trials_queued``, ``eta_s``; the baselines phase logs them with the prefix ``baselines_``), at the
step = trials done, so the parent run's charts show the sweep advancing.

The phase's trial count is the one Tune sets the callback up with (``total_num_samples``), so a
phase resumed with more trials (platform/resumable_search.py) counts them.  The ETA is this
session's seconds per finished trial times the trials left.  The metrics go through the queued
sender (trainers/training/tracking_sender.py): a tracking-server outage never stalls the sweep.
"""
from __future__ import annotations

import time

from ray.tune import Callback

DONE = ("TERMINATED", "ERROR")


def progress(statuses: list[str], total: int, elapsed_s: float, seen: int) -> dict:
    """``{"done", "running", "queued", "eta_s"}`` of a phase whose trials have ``statuses`` (Tune's
    words) with ``total`` trials in all, ``seen`` of which ended in the ``elapsed_s`` seconds of
    this session (eta_s: None before any did; 0 when nothing is left)."""
    done = sum(s in DONE for s in statuses)
    running = sum(s == "RUNNING" for s in statuses)
    left = max(0, total - done)
    eta = elapsed_s / seen * left if seen else None
    return {"done": done, "running": running, "queued": max(0, left - running), "eta_s": eta if left else 0.0}


def progress_text(phase: str, total: int, p: dict) -> str:
    from search_spaces.estimate import duration
    left = total - p["done"]
    return (f"[sweep] {phase}: {p['done']}/{total} trials done, {p['running']} running, {p['queued']} queued"
            + (f"; ETA ~{duration(p['eta_s'])}" if left > 0 and p["eta_s"] is not None else ""))


def progress_metrics(phase: str, p: dict) -> dict:
    prefix = "" if phase == "search" else f"{phase}_"
    return {f"{prefix}trials_done": p["done"], f"{prefix}trials_running": p["running"],
            f"{prefix}trials_queued": p["queued"], f"{prefix}eta_s": p["eta_s"]}


class ProgressLine(Callback):
    """Prints the phase's progress line when a trial ends and logs it on the parent run."""

    def __init__(self, phase: str, parent_run_id: str | None = None):
        self.phase, self.parent_run_id = phase, parent_run_id
        self.total, self.started, self.seen, self._sender = 0, time.time(), 0, None

    def __getstate__(self) -> dict:  # Tune pickles its callbacks with the experiment: not the sender thread
        return {**self.__dict__, "_sender": None}

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        self.total = int(total_num_samples or 0)
        self.started, self.seen = time.time(), 0
        if self.parent_run_id:  # the driver's store now (a restored callback may come from another place)
            import mlflow

            from trainers.paths import mlflow_tracking_uri
            from trainers.training.tracking_sender import Sender
            self._sender = Sender(mlflow.MlflowClient(mlflow_tracking_uri()), self.parent_run_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._update(trials, trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._update(trials, trial)

    def on_experiment_end(self, trials, **info):
        if self._sender is not None:
            self._sender.close()
            self._sender = None

    def _update(self, trials, ended) -> None:
        self.seen += 1
        # Tune calls this before it marks the ending trial TERMINATED / ERROR
        statuses = ["TERMINATED" if t is ended else t.status for t in trials]
        p = progress(statuses, max(self.total, len(trials)), time.time() - self.started, self.seen)
        print(progress_text(self.phase, max(self.total, len(trials)), p), flush=True)
        if self._sender is not None:
            from trainers.training.tracking_sender import metric_batch
            self._sender.put("metrics", metric_batch(progress_metrics(self.phase, p), p["done"]))  # None: no ETA yet
