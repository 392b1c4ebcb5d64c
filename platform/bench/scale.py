"""Sweep-scale case of ``--suite faults``: a sweep of many trivial trials (the ``trivial`` budget: 2
smoke training steps, no evaluation, 8 at once) run for real by ``python -m platform.search``, to
see what the driver costs per trial and how the Optuna journal grows.

Measured, with a local Ray of ``num_cpus`` CPUs, a sqlite MLflow store and the sweep in a temporary
directory (deleted afterwards):

  slot_s_per_trial      trial-phase wall time x concurrency / trials: the time one trial holds a slot
  steady_slot_s_per_trial  the same from the first tenth of the trials on (Ray's start-up left out)
  trial_process_s       Tune's ``time_total_s`` of a trial (its trainable: start-up, MLflow run,
                        DeepSpeed engine, training, final checkpoint), mean
  training_s            the training loop's own time (``wall_s`` of its last metrics record), mean
  overhead_s_per_trial  slot_s_per_trial - training_s: everything but the training (start-up in
                        the worker and scheduling in the driver)
  scheduling_s_per_trial  slot_s_per_trial - trial_process_s: the driver's and Ray's share alone
  driver_cpu_s_per_trial  CPU seconds of the driver process / trials
  summary_s             from the last trial's end to the driver's exit (table, MLflow, report)
  journal_bytes         size of the Optuna journal (optuna_journal.log), also per trial
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from trainers.paths import PROJECT_ROOT, cache_dir


def _read_json_lines(path: str) -> list[dict]:
    out = []
    with open(path) as fh:
        for line in fh:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def _cpu_seconds(pid: int) -> float | None:
    import psutil
    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except psutil.Error:
        return None


def run_sweep(trials: int, concurrency: int, num_cpus: int, say, keep: str | None = None) -> dict:
    """Run the sweep; its measurements (see the module docstring)."""
    workdir = keep or tempfile.mkdtemp(prefix="dtr-bench-sweep-")
    sweep_dir = os.path.join(workdir, "sweep")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR",
                                                           "MASTER_PORT", "PYTHONPATH")}
    env.update(DTR_RUNS_DIR=os.path.join(workdir, "runs"), DTR_CACHE_DIR=cache_dir(), DS_ACCELERATOR="cpu",
               MLFLOW_TRACKING_URI=f"sqlite:///{os.path.join(workdir, 'mlflow.db')}", PYTHONUNBUFFERED="1",
               DTR_SYSTEM_METRICS="0")
    cmd = [sys.executable, "-m", "platform.search", "smoke", "--budget", "trivial", "--objectives", "images_per_s",
           "--trials", str(trials), "--max-concurrent", str(concurrency), "--num-cpus", str(num_cpus),
           "--sweep-dir", sweep_dir]
    say(f"    {' '.join(cmd[1:])}")
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    cpu = {"last": 0.0}

    def sample_cpu():
        while proc.poll() is None:
            got = _cpu_seconds(proc.pid)
            cpu["last"] = got if got is not None else cpu["last"]
            time.sleep(0.5)
    threading.Thread(target=sample_cpu, daemon=True).start()
    first_done = last_done = None
    tail, completions = [], []
    try:
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-40:]
            if line.startswith("[sweep] search:") and "trials done" in line:
                now = time.perf_counter() - started
                first_done = first_done if first_done is not None else now
                last_done = now
                done = int(line.split(":")[1].split("/")[0])
                completions.append((done, now))
                if done % max(1, trials // 10) == 0:
                    say(f"    {done}/{trials} trials done at {now:.0f} s")
        proc.wait()
    except BaseException:  # interrupted (SIGTERM of the bench): stop the sweep, leave nothing behind
        proc.terminate()
        proc.wait(timeout=120)
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"the sweep exited with {proc.returncode}: " + " | ".join(tail[-5:]))
    result = _measure(sweep_dir, trials, concurrency, wall, last_done or wall, cpu["last"])
    # steady state: from the trial that completes the first tenth to the last one (Ray's start-up left out)
    start = next(((n, t) for n, t in completions if n >= max(1, trials // 10)), None)
    if start and completions[-1][0] > start[0]:
        result["steady_slot_s_per_trial"] = (completions[-1][1] - start[1]) * concurrency / (completions[-1][0] - start[0])
    if keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _measure(sweep_dir: str, trials: int, concurrency: int, wall: float, trials_wall: float, driver_cpu: float) -> dict:
    process_s = []
    for path in glob.glob(os.path.join(sweep_dir, "search", "*", "result.json")):
        rows = _read_json_lines(path)
        if rows:
            process_s.append(rows[-1].get("time_total_s", 0.0))
    training_s = []
    for path in glob.glob(os.path.join(sweep_dir, "trials", "*", "metrics.jsonl")):
        walls = [r["wall_s"] for r in _read_json_lines(path) if "wall_s" in r]
        if walls:
            training_s.append(walls[-1])
    journal = os.path.join(sweep_dir, "optuna_journal.log")
    journal_bytes = os.path.getsize(journal) if os.path.exists(journal) else 0
    slot = trials_wall * concurrency / trials
    mean_process = statistics.fmean(process_s) if process_s else float("nan")
    mean_training = statistics.fmean(training_s) if training_s else float("nan")
    return {"trials": trials, "concurrency": concurrency, "finished_trials": len(training_s),
            "wall_s": wall, "trials_wall_s": trials_wall, "summary_s": wall - trials_wall,
            "slot_s_per_trial": slot, "trial_process_s": mean_process, "training_s": mean_training,
            "overhead_s_per_trial": slot - mean_training, "scheduling_s_per_trial": slot - mean_process,
            "driver_cpu_s": driver_cpu, "driver_cpu_s_per_trial": driver_cpu / trials,
            "journal_bytes": journal_bytes, "journal_bytes_per_trial": journal_bytes / trials}
