"""Fresh processes, launched one after the other (never interleaved): how long a training process
takes to reach its first completed step, and how long ``import deepspeed`` + init_distributed take.

Start-up of a training process (:func:`launch_training`): the parent takes ``time.time()`` just
before it launches::

    python -m trainers.train --preset P --steps 1 --no-mlflow --final-eval-samples 0 --eval-every 0
        --ckpt-every 0 --progress false --run-dir D --threads N

and polls ``D/metrics.jsonl`` every ``POLL_S``.  The trainer creates that file empty when its loop is
set up and appends the first loss record right after step 1 (then only writes its final checkpoint
and exits).  When the first complete line is there, the file's mtime is read: the moment that line
was written, on the same clock as the launch time.  So ``first_step_s = mtime - launch`` is
independent of the polling interval and of the trainer's own timers (its ``wall_s`` counts from the
loop's start; ``deepspeed_init_s`` goes to MLflow only, and covers the engine alone).
``process_s`` is launch to exit; ``first_step_s < process_s`` always (the checkpoint comes after).

Every launch gets an empty ``TORCH_EXTENSIONS_DIR`` (a JIT build of a DeepSpeed op would show, as
on a fresh machine) and none of the launcher variables (RANK, MASTER_PORT, ...) that the parent's
own DeepSpeed engines set.  :func:`launch_dsinit` runs ``python -m trainers.bench.dsinit`` alike.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from trainers.bench.cases import DsInitCase, StartupCase

POLL_S = 0.02
TIMEOUT_S = 900.0
LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _code_root() -> str:
    """The directory that holds the ``trainers`` package (the children's working directory)."""
    import trainers
    return os.path.dirname(os.path.dirname(os.path.abspath(trainers.__file__)))


def _env(extensions_dir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["TORCH_EXTENSIONS_DIR"] = extensions_dir
    return env


def _first_record_mtime(path: str) -> float | None:
    """The mtime of ``path`` once its first line is complete (read first, then stat: the mtime is of
    that write or a later one, never of the empty file), else None."""
    try:
        with open(path, "rb") as fh:
            line = fh.readline()
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        return None
    return mtime if line.endswith(b"\n") else None


def _failed(what: str, log: str, rc) -> RuntimeError:
    with open(log, errors="replace") as fh:
        tail = fh.read()[-3000:]
    return RuntimeError(f"{what} exited with {rc} before its first step; its output ends:\n{tail}")


def launch_training(preset: str, threads: int, workdir: str, timeout: float = TIMEOUT_S) -> dict:
    """One fresh training process of ``preset`` for one step: ``{"first_step_s", "process_s"}``."""
    run_dir, log = os.path.join(workdir, "run"), os.path.join(workdir, "train.log")
    cmd = [sys.executable, "-m", "trainers.train", "--preset", preset, "--steps", "1", "--no-mlflow",
           "--final-eval-samples", "0", "--eval-every", "0", "--ckpt-every", "0", "--progress", "false",
           "--run-dir", run_dir, "--threads", str(threads)]
    metrics = os.path.join(run_dir, "metrics.jsonl")
    with open(log, "wb") as out:
        launched = time.time()
        proc = subprocess.Popen(cmd, cwd=_code_root(), env=_env(os.path.join(workdir, "ext")), stdout=out,
                                stderr=subprocess.STDOUT)
        first = None
        try:
            while first is None and proc.poll() is None:
                if time.time() - launched > timeout:
                    raise TimeoutError(f"{' '.join(cmd)} ran past {timeout:.0f}s")
                time.sleep(POLL_S)
                first = _first_record_mtime(metrics)
            rc = proc.wait(timeout=max(1.0, timeout - (time.time() - launched)))
            ended = time.time()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    first = first if first is not None else _first_record_mtime(metrics)  # written between two polls
    if rc != 0 or first is None:
        raise _failed("python -m trainers.train", log, rc)
    return {"first_step_s": first - launched, "process_s": ended - launched}


def launch_dsinit(declared_ops: bool, device: str, workdir: str, timeout: float = TIMEOUT_S) -> dict:
    """One fresh ``python -m trainers.bench.dsinit`` process: ``{"import_s", "init_s", "dsinit_s",
    "process_s"}`` (import + init measured inside the child, process_s by the parent)."""
    log = os.path.join(workdir, "dsinit.log")
    cmd = [sys.executable, "-m", "trainers.bench.dsinit", "--device", device] + ([] if declared_ops else ["--shipped"])
    with open(log, "wb") as out:
        launched = time.time()
        proc = subprocess.run(cmd, cwd=_code_root(), env=_env(os.path.join(workdir, "ext")), stdout=out,
                              stderr=subprocess.STDOUT, timeout=timeout, check=False)
        ended = time.time()
    with open(log, errors="replace") as fh:
        lines = [x for x in fh.read().splitlines() if x.startswith("{") and '"init_s"' in x]
    if proc.returncode != 0 or not lines:
        raise _failed("python -m trainers.bench.dsinit", log, proc.returncode)
    got = json.loads(lines[-1])
    return {**got, "dsinit_s": got["import_s"] + got["init_s"], "process_s": ended - launched}


def run_launches(case: StartupCase | DsInitCase, threads: int, device: str, on_launch=None) -> list[dict]:
    """``case.launches`` fresh processes one after the other, each in an empty temporary directory."""
    out = []
    for i in range(case.launches):
        workdir = tempfile.mkdtemp(prefix=f"dtr-bench-{case.name}-")
        try:
            if isinstance(case, StartupCase):
                got = launch_training(case.preset, threads, workdir)
            else:
                got = launch_dsinit(case.declared_ops, device, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        out.append(got)
        if on_launch:
            on_launch(i, got)
    return out
