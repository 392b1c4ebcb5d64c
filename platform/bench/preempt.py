"""Preemption case of ``--suite faults``: how long a training run takes from SIGTERM to its checkpoint
and to its exit (trainers/training/preemption.py), at the model sizes of the ``laptop`` and
``paper-sim`` budgets (target: under 30 s, a spot instance's notice is 2 minutes; Kubernetes' default
grace period 30 s).

Each preset is launched as ``python -m trainers.train`` (one thread, no MLflow, no evaluation, a
step count it never reaches and no periodic checkpoint), sent SIGTERM once it has logged 3 steps,
and timed: signal -> the checkpoint written (the run's own line ``... written X s after the
signal``) and signal -> process exit (status 143).  ``paper-sim`` trains on latents: a tiny cache is
built first (python -m platform.prepare, synthetic images, the tiny random VAE).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from trainers.paths import PROJECT_ROOT
from trainers.training.preemption import EXIT_STATUS

TARGET_S = 30.0
WRITTEN = re.compile(r"preempted: checkpoint of step (\d+) written ([0-9.]+) s after the signal")


def _env(workdir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR",
                                                           "MASTER_PORT", "PYTHONPATH")}
    env.update(DTR_RUNS_DIR=os.path.join(workdir, "runs"), DS_ACCELERATOR="cpu", PYTHONUNBUFFERED="1")
    return env


def build_latent_cache(workdir: str) -> str:
    """A tiny latent cache for the paper-sim preset (as tests/test_paper_sim.py builds it)."""
    images, cache = os.path.join(workdir, "images"), os.path.join(workdir, "latents")
    for args in (["synthetic-folder", "--out", images, "--classes", "4", "--per-class", "8", "--size", "32"],
                 ["latents", "--src", images, "--kind", "imagenet_folder", "--out", cache, "--image-size", "32",
                  "--tiny-vae", "--local"]):
        done = subprocess.run([sys.executable, "-m", "platform.prepare", *args], cwd=PROJECT_ROOT, env=_env(workdir),
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"platform.prepare {args[0]} failed: {done.stderr.strip().splitlines()[-1:]}")
    return cache


def _logged_steps(run_dir: str) -> int:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return 0
    with open(path) as fh:
        return sum('"loss"' in line for line in fh)


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def measure_preemption(preset: str, workdir: str, data_root: str | None = None, timeout: float = 600) -> dict:
    """Launch, SIGTERM after 3 logged steps, time the checkpoint and the exit."""
    run_dir = os.path.join(workdir, f"preempt-{preset}")
    cmd = [sys.executable, "-m", "trainers.train", "--preset", preset, "--run-dir", run_dir, "--steps", "1000000",
           "--ckpt-every", "1000000", "--eval-every", "0", "--final-eval-samples", "0", "--log-every", "1",
           "--no-mlflow", "--threads", "1", *(["--data-root", data_root] if data_root else [])]
    launched = time.monotonic()
    log_path = os.path.join(workdir, f"preempt-{preset}.log")
    with open(log_path, "w") as log:  # a file, not a pipe: nothing blocks on a full pipe
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=_env(workdir), stdout=log, stderr=subprocess.STDOUT)
    try:
        while _logged_steps(run_dir) < 3:
            if proc.poll() is not None or time.monotonic() - launched > timeout:
                raise RuntimeError(f"{preset}: the run ended before 3 steps: {open(log_path).read()[-500:]}")
            time.sleep(0.05)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    first_steps = time.monotonic()
    steps_before = _logged_steps(run_dir)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=timeout)
    exit_s = time.monotonic() - sent
    with open(log_path) as fh:
        err = fh.read()
    written = WRITTEN.search(err)
    checkpoints = os.path.join(run_dir, "checkpoints")
    tags = sorted(t for t in os.listdir(checkpoints) if t.startswith("step_")) if os.path.isdir(checkpoints) else []
    step_s = (sent - first_steps) / max(1, steps_before - 3) if steps_before > 3 else None
    result = {"preset": preset, "exit_status": proc.returncode, "signal_to_exit_s": exit_s,
              "signal_to_checkpoint_s": float(written.group(2)) if written else None,
              "checkpoint_step": int(written.group(1)) if written else None,
              "steps_logged_at_signal": steps_before, "step_s": step_s,
              "checkpoint_mb": _dir_bytes(os.path.join(checkpoints, tags[-1])) / 2**20 if tags else None,
              "startup_to_3_steps_s": first_steps - launched, "target_s": TARGET_S}
    result["passed"] = bool(written) and proc.returncode == EXIT_STATUS and exit_s < TARGET_S
    if not result["passed"]:
        result["stderr_tail"] = err[-1500:]
    return result
