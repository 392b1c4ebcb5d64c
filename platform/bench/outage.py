"""Outage case of ``--suite faults``: the MLflow server goes away in the middle of a sweep and comes
back, and the timeline of what the trials did meanwhile.

A real sweep (``python -m platform.search smoke --budget smoke``, trials long enough to span the
outage, no evaluation) logs to an ``mlflow server`` on loopback (sqlite, a temporary directory).  Once
a trial has logged ``stop_after`` training records, the server is stopped (connections refused), kept
down ``outage_s`` seconds and started again on the same port.  Measured, in seconds from the sweep's
launch:

  stopped_at / restarted_at    the server stopped, the server answering /health again
  records_during_outage        training records the trials wrote to metrics.jsonl while it was down
  arrived_at                   every record of the outage readable from MLflow (polled every 0.5 s)
  catch_up_s                   arrived_at - restarted_at (the queued sender retries every
                               $DTR_MLFLOW_RETRY_S = 5 s)
  sweep_exit / trials          the sweep's exit status, and each trial's records in metrics.jsonl vs
                               the values MLflow holds for the same steps (``missing`` must be 0)

Passed: the sweep exits 0, every trial trained all its steps, nothing logged is missing from MLflow, and training
went on during the outage (records_during_outage > 0).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from platform.bench.tracking_store import start_server, stop_server
from trainers.paths import PROJECT_ROOT, cache_dir
from trainers.training.distributed import free_port


def _records(trial_dir: str) -> list[dict]:
    """The training records (those with a loss) of one trial's metrics.jsonl."""
    path = os.path.join(trial_dir, "metrics.jsonl")
    out = []
    if os.path.exists(path):
        with open(path) as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                except ValueError:  # the line being written
                    continue
                if "loss" in row:
                    out.append(row)
    return out


def _trial_dirs(sweep_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(sweep_dir, "trials", "*")))


def _logged_steps(client, trial_dir: str) -> set[int]:
    """Steps of the trial's ``loss`` history in MLflow (empty while the run id is unknown)."""
    id_file = os.path.join(trial_dir, "mlflow_run_id")
    if not os.path.exists(id_file):
        return set()
    return {m.step for m in client.get_metric_history(open(id_file).read().strip(), "loss")}


def run_outage(outage_s: float, steps: int, stop_after: int, say, trials: int = 2) -> dict:
    """Run the sweep through one outage; the timeline and checks of the module docstring."""
    import mlflow
    workdir = tempfile.mkdtemp(prefix="dtr-bench-outage-")
    sweep_dir = os.path.join(workdir, "sweep")
    backend = f"sqlite:///{os.path.join(workdir, 'mlflow.db')}"
    port = free_port()
    server, url = start_server(backend, workdir, None, port=port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and k != "PYTHONPATH"}
    env.update(DTR_RUNS_DIR=os.path.join(workdir, "runs"), DTR_CACHE_DIR=cache_dir(), DS_ACCELERATOR="cpu",
               MLFLOW_TRACKING_URI=url, PYTHONUNBUFFERED="1", DTR_SYSTEM_METRICS="0")
    sets = [f"steps={steps}", "log_every=10", "ckpt_every=0", "eval_every=0", "final_eval_samples=0"]
    cmd = [sys.executable, "-m", "platform.search", "smoke", "--budget", "smoke", "--objectives", "images_per_s",
           "--trials", str(trials), "--max-concurrent", "2", "--sweep-dir", sweep_dir,
           *[arg for s in sets for arg in ("--set", s)]]
    say(f"    {' '.join(cmd[1:])}; server {url}")
    log_path = os.path.join(workdir, "sweep.log")
    started = time.monotonic()
    result: dict = {"outage_s": outage_s, "steps": steps}
    try:
        with open(log_path, "w") as log:
            sweep = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        while max((len(_records(d)) for d in _trial_dirs(sweep_dir)), default=0) < stop_after:
            if sweep.poll() is not None:
                raise RuntimeError(f"the sweep ended before the outage: {open(log_path).read()[-400:]}")
            time.sleep(0.1)
        before = {d: len(_records(d)) for d in _trial_dirs(sweep_dir)}
        stop_server(server)
        result["stopped_at"] = time.monotonic() - started
        say(f"    server stopped at {result['stopped_at']:.1f} s")
        time.sleep(outage_s)
        server, _ = start_server(backend, workdir, None, port=port)
        result["restarted_at"] = time.monotonic() - started
        # what the trials logged from the stop until the server answered again (its start-up included)
        during = {d: _records(d)[before.get(d, 0):] for d in _trial_dirs(sweep_dir)}
        result["records_during_outage"] = sum(len(v) for v in during.values())
        say(f"    server back at {result['restarted_at']:.1f} s; {result['records_during_outage']} training "
            f"records logged while it was down")
        client = mlflow.MlflowClient(tracking_uri=url)
        wanted = {d: {r["step"] for r in rows} for d, rows in during.items() if rows}
        while any(not steps_ <= _logged_steps(client, d) for d, steps_ in wanted.items()):
            if time.monotonic() - started > result["restarted_at"] + 600:
                break
            time.sleep(0.5)
        else:
            result["arrived_at"] = time.monotonic() - started
            result["catch_up_s"] = result["arrived_at"] - result["restarted_at"]
        sweep.wait(timeout=1800)
        result["sweep_exit"] = sweep.returncode
        result["sweep_s"] = time.monotonic() - started
        result["trials"] = {}
        for d in _trial_dirs(sweep_dir):
            logged = {r["step"] for r in _records(d)}
            result["trials"][os.path.basename(d)] = {"records": len(logged), "finished": len(logged) == steps // 10,
                                                     "missing": len(logged - _logged_steps(client, d))}
        result["missing"] = sum(t["missing"] for t in result["trials"].values())
        result["passed"] = (result["sweep_exit"] == 0 and result["records_during_outage"] > 0
                            and "arrived_at" in result and result["missing"] == 0
                            and all(t["finished"] for t in result["trials"].values()))
        if result["sweep_exit"] != 0:
            result["log_tail"] = open(log_path).read()[-1500:]
        return result
    finally:
        if "sweep" in locals() and sweep.poll() is None:
            sweep.terminate()
            sweep.wait(timeout=120)
        stop_server(server)
        shutil.rmtree(workdir, ignore_errors=True)
