"""Faults a cluster throws at a training run (issue 15): a corrupt newest checkpoint, a full disk
mid-checkpoint, a SIGTERM (spot preemption).  Every case trains the smoke preset for real and
compares the loss trajectory with one uninterrupted reference run.
"""
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import mlflow
import pytest
import torch
from train_support import DIST_ENV, ROOT, smoke, trajectory

from platform.bench.tracking_store import start_server, stop_server
from platform.sweep_lock import LOCK_FILE, SweepLocked, acquire, read_lock, sweep_lock
from trainers.models.from_config import model_for
from trainers.presets import preset_config
from trainers.training.checkpoint import (
    COMPLETE,
    checkpoint_problem,
    complete_checkpoints,
    resolve_resume_dir,
    saved_step,
    tag_for,
)
from trainers.training.distributed import free_port
from trainers.training.preemption import EXIT_STATUS, Preempted
from trainers.training.run import train
from trainers.training.tracking import MlflowRun, read_metrics

pytestmark = pytest.mark.slow
STEPS = 12
SMOKE_ARGS = ("--preset", "smoke", "--final-eval-samples", "0", "--no-mlflow", "--threads", "1")


def fault_config(root, name, steps=STEPS, ckpt_every=4):
    return smoke(root, name, steps=steps, ckpt_every=ckpt_every, final_eval_samples=0)


def run(cfg, **kw):
    return train(cfg, mlflow_enabled=False, threads=1, **kw)


def cli_args(cfg, *extra):
    return ["-m", "trainers.train", *SMOKE_ARGS, "--run-dir", cfg.run_dir, "--steps", str(cfg.steps),
            "--ckpt-every", str(cfg.ckpt_every), *extra]


def child_env():
    return {k: v for k, v in os.environ.items() if k not in DIST_ENV}


@pytest.fixture(scope="module")
def reference(train_env):
    cfg = fault_config(train_env, "reference")
    run(cfg)
    return trajectory(read_metrics(cfg.run_dir))


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(train_env, reference, caplog):
    cfg = fault_config(train_env, "corrupt")
    run(cfg.replace(steps=8))  # checkpoints at 4 and 8
    newest = os.path.join(cfg.run_dir, "checkpoints", tag_for(8))
    states = os.path.join(newest, "mp_rank_00_model_states.pt")
    with open(states, "r+b") as fh:  # NFS handed back a truncated file; the COMPLETE marker is there
        fh.truncate(os.path.getsize(states) // 2)
    assert os.path.exists(os.path.join(newest, COMPLETE))
    assert "mp_rank_00_model_states.pt has" in checkpoint_problem(newest)
    with caplog.at_level(logging.WARNING, logger="trainers.training.checkpoint"):
        run(cfg, resume=cfg.run_dir)
    warnings = [r.getMessage() for r in caplog.records if "corrupt checkpoint" in r.getMessage()]
    assert len(warnings) == 1 and tag_for(8) in warnings[0], warnings
    records = read_metrics(cfg.run_dir)
    assert [r["step"] for r in records if "resumed_from_step" in r] == []  # metrics.jsonl: one trajectory
    assert trajectory(records) == reference  # steps 5..12 retrained from step 4, bit for bit
    # a flipped byte (same size) is caught by the sha256; the rewritten step 8 verifies again
    good = os.path.join(cfg.run_dir, "checkpoints", tag_for(12))
    flipped = shutil.copytree(good, os.path.join(str(train_env), "flipped", "checkpoints", tag_for(12)))
    with open(os.path.join(flipped, "ema.pt"), "r+b") as fh:
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
        fh.seek(-1, os.SEEK_END)
        fh.write(bytes([last[0] ^ 1]))
    assert checkpoint_problem(flipped) == "ema.pt does not match its sha256"
    assert checkpoint_problem(os.path.join(cfg.run_dir, "checkpoints", tag_for(8))) is None
    with pytest.raises(FileNotFoundError, match="no complete checkpoint that verifies"):
        resolve_resume_dir(flipped)


def _file_size_limit(limit: int):
    def apply():  # in the child: writes past `limit` bytes fail with EFBIG instead of killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(train_env, reference):
    src = fault_config(train_env, "reference")
    cfg = fault_config(train_env, "disk-full", steps=16)
    shutil.copytree(src.run_dir, cfg.run_dir)  # checkpoints at 8 and 12 (verified)
    proc = subprocess.run([sys.executable, *cli_args(cfg, "--resume", cfg.run_dir)], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(512 * 1024))
    assert proc.returncode != 0
    # one line says what failed and what is kept (the last one; cli.py may print it without a traceback)
    lines = [line for line in proc.stderr.splitlines() if f"{tag_for(12)} is kept" in line]
    assert len(lines) == 1 and lines[0] == proc.stderr.strip().splitlines()[-1], proc.stderr[-3000:]
    assert f"could not write checkpoint {cfg.run_dir}/checkpoints/{tag_for(16)}" in lines[0]
    # no half-written checkpoint is left to be taken for complete; the previous one resumes
    assert not os.path.exists(os.path.join(cfg.run_dir, "checkpoints", tag_for(16)))
    assert [saved_step(p) for p in complete_checkpoints(cfg.run_dir)] == [8, 12]
    assert resolve_resume_dir(cfg.run_dir).endswith(tag_for(12))
    assert checkpoint_problem(resolve_resume_dir(cfg.run_dir)) is None
    run(cfg, resume=cfg.run_dir)  # the disk has room again: the run finishes from step 12
    assert trajectory(read_metrics(cfg.run_dir))[:STEPS] == reference


def test_sigterm_checkpoints_the_current_step_and_resume_is_exact(train_env, reference):
    cfg = fault_config(train_env, "preempted", steps=400, ckpt_every=1000)  # no checkpoint but SIGTERM's
    proc = subprocess.Popen([sys.executable, *cli_args(cfg)], cwd=ROOT, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while len(read_metrics(cfg.run_dir)) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    grace = time.monotonic() - sent
    print(f"SIGTERM to exit: {grace:.2f} s")
    assert proc.returncode == EXIT_STATUS, err[-3000:]
    assert grace < 30
    step = read_metrics(cfg.run_dir)[-1]["step"]  # the step in flight was finished and logged
    assert 4 <= step < STEPS
    assert [saved_step(p) for p in complete_checkpoints(cfg.run_dir)] == [step]
    assert checkpoint_problem(complete_checkpoints(cfg.run_dir)[0]) is None
    assert sum(line.startswith("preempted: checkpoint of step") for line in err.splitlines()) == 1
    run(cfg.replace(steps=STEPS), resume=cfg.run_dir)
    assert trajectory(read_metrics(cfg.run_dir)) == reference


def test_preempted_survives_pickling():
    """Ray pickles a Ray Train worker's exception to its controller (a SIGTERM-ed multi-worker trial)."""
    import pickle
    err = pickle.loads(pickle.dumps(Preempted("preempted: checkpoint of step 7 written", "/ckpt", 7)))
    assert (err.code, err.checkpoint, err.step, str(err)) == (EXIT_STATUS, "/ckpt", 7,
                                                             "preempted: checkpoint of step 7 written")


def test_zero3_ema_matches_zero0_with_two_workers(tmp_path):
    """ZeRO-3 partitions every parameter: the EMA (what checkpoints store and evaluation samples
    with) must fold in the gathered full weights, exactly as under ZeRO-0."""
    port, steps = free_port(), 3
    env = {**child_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
           "DS_ACCELERATOR": "cpu", "DTR_RUNS_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "faults_worker.py"), str(tmp_path),
                               str(steps)], cwd=ROOT, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    ema = {s: torch.load(tmp_path / f"zero{s}" / "checkpoints" / tag_for(steps) / "ema.pt") for s in (0, 3)}
    start = model_for(preset_config("smoke")).state_dict()
    assert ema[0].keys() == ema[3].keys()
    for name, value in ema[0].items():
        assert value.shape == ema[3][name].shape, name
        torch.testing.assert_close(ema[3][name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert any(not torch.equal(v, start[k]) for k, v in ema[0].items())  # the EMA moved


def test_one_driver_per_sweep_directory(tmp_path, caplog):
    sweep = str(tmp_path / "sweep")
    with sweep_lock(sweep) as mine:
        assert read_lock(sweep) == mine and mine["pid"] == os.getpid()
        with pytest.raises(SweepLocked, match=f"pid {os.getpid()} on {mine['host']}"):
            acquire(sweep)
        # the command line refuses in one line, before Ray or MLflow start
        proc = subprocess.run([sys.executable, "-m", "platform.search", "smoke", "--budget", "smoke", "--sweep-dir",
                               sweep], cwd=ROOT, env={**child_env(), "DTR_RUNS_DIR": str(tmp_path)},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert proc.stderr.strip().splitlines() == [
            f"error: {sweep} is in use by another driver (pid {os.getpid()} on {mine['host']} since "
            f"{mine['since']}): wait for it to finish or stop it; if that driver is gone, delete "
            f"{os.path.join(sweep, LOCK_FILE)}"]
        assert read_lock(sweep) == mine  # the refused driver left the lock alone
    assert read_lock(sweep) is None  # released on exit
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a driver killed with -9 leaves its lock behind: its pid is gone
    with open(os.path.join(sweep, LOCK_FILE), "w") as fh:
        json.dump({"pid": dead.pid, "host": mine["host"], "since": "earlier"}, fh)
    with caplog.at_level(logging.WARNING, logger="platform.sweep_lock"):
        with sweep_lock(sweep) as taken:
            assert read_lock(sweep) == taken
    assert [r.getMessage() for r in caplog.records] == [
        f"taking over the stale lock of {sweep} (pid {dead.pid} on {mine['host']} is not running)"]


def _mlflow_server(db, port):
    # one uvicorn worker and no job runners (as on the cluster's head): with them, 7 huey consumers
    # that each import MLflow slowed the start past a minute on 2 loaded cores
    return start_server(f"sqlite:///{db}", str(db.parent), None, port=port, workers=1, timeout=180)[0]


def test_mlflow_outage_buffers_metrics_and_never_stops_the_run(tmp_path, monkeypatch, caplog):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    for name, value in {"MLFLOW_TRACKING_URI": uri, "DTR_MLFLOW_RETRY_S": "0.2", "DTR_SYSTEM_METRICS": "0",
                        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "DTR_RUNS_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    server = _mlflow_server(tmp_path / "mlflow.db", port)
    try:
        tracker = MlflowRun(smoke(tmp_path, "outage"))
        tracker.log_metrics({"loss": 1.0}, step=1)
        stop_server(server)  # the server goes away mid-run: connections are refused
        with caplog.at_level(logging.WARNING, logger="trainers.training.tracking_sender"):
            started = time.monotonic()
            for step in (2, 3, 4):
                tracker.log_metrics({"loss": float(step)}, step=step)
            tracker.set_tags({"phase": "during outage"})
            assert time.monotonic() - started < 0.5  # the training thread never waits for the server
            deadline = time.monotonic() + 30
            while not any("unreachable" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
                time.sleep(0.05)
            server = _mlflow_server(tmp_path / "mlflow.db", port)
            tracker.finish("FINISHED")  # drains the buffer into the server that is back
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 2 and "unreachable" in lines[0] and "reachable again" in lines[1], lines
        client = mlflow.MlflowClient(tracking_uri=uri)
        assert [(m.step, m.value) for m in client.get_metric_history(tracker.run_id, "loss")] == \
            [(s, float(s)) for s in (1, 2, 3, 4)]
        run = client.get_run(tracker.run_id)
        assert run.data.tags["phase"] == "during outage" and run.info.status == "FINISHED"
    finally:
        stop_server(server)


def test_a_resumed_run_logs_what_a_killed_process_never_sent(train_env):
    """Writes queued for MLflow die with a process killed outright (SIGKILL, a lost node): here the
    rows of steps 5-8 are taken out of the store after the run.  The resumed run finds them in
    metrics.jsonl and logs them, once, before it trains on."""
    import sqlite3

    from train_support import mlflow_client, run_id_of
    cfg = fault_config(train_env, "lost-writes", steps=8)
    train(cfg, threads=1)
    run_id = run_id_of(cfg)
    with sqlite3.connect(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")) as db:
        assert db.execute("DELETE FROM metrics WHERE run_uuid = ? AND step > 4", (run_id,)).rowcount > 0
    client = mlflow_client()
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == [1, 2, 3, 4]
    train(cfg.replace(steps=STEPS), resume=cfg.run_dir, threads=1)
    assert run_id_of(cfg) == run_id
    logged = read_metrics(cfg.run_dir)
    for key in ("loss", "mse", "images_per_s"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert history == [(r["step"], r[key]) for r in logged], key  # every step once, the values written
