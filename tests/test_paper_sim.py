"""The cluster path at test size (issue 10): a 2-node Ray cluster on loopback runs the `paper-sim`
budget, the `paper` preset's pipeline shrunk: an image folder -> latent cache (tiny random VAE,
`python -m platform.prepare`) -> DiT on the latents, 2 Ray Train workers per trial on the second
node (a custom `gpu_sim` resource stands in for its GPUs) -> every rank samples its share ->
decoded with the cache's VAE -> Inception-architecture FID and IS -> MLflow -> report.

Mid-way through the first trial the second node's processes are killed (SIGKILL of its raylet and
everything under it, as when a machine dies); a replacement node joins, the trial is retried once
and resumes from its newest checkpoint: no checkpointed step is trained again.
"""
import glob
import json
import os
import secrets
import subprocess
import sys
import threading
import time

import psutil
import pytest
from train_support import DIST_ENV, ROOT

pytestmark = pytest.mark.slow
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
HEAD_PORT = 6411


def _env(tmp_path, cache_dir):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and k not in DIST_ENV}
    env.update(DTR_RUNS_DIR=str(tmp_path / "runs"), DTR_CACHE_DIR=str(cache_dir),
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", RAY_DEDUP_LOGS="0",
               DS_ACCELERATOR="cpu", PYTHONUNBUFFERED="1",
               # a dead node is noticed within ~3 s instead of Ray's default ~30 s
               RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3",
               RAY_health_check_initial_delay_ms="1000")
    # the cluster's own token authentication, as on a cluster that uses it: `ray start --head` turns
    # it on only when a token exists already (~/.ray/auth_token, which any earlier local ray.init()
    # writes), so the head, the nodes and the driver are told explicitly
    token_file = tmp_path / "ray_auth_token"
    token_file.write_text(secrets.token_hex(32))
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
    return env


def _run(cmd, env, timeout=300):
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (cmd, result.stdout[-2000:], result.stderr[-2000:])
    return result


def _start_worker_node(env, port: int) -> int:
    """A second node with 2 simulated GPUs and 3 CPUs (one per training worker, plus room for the
    fractional-CPU trial driver and Ray Train controller that may land there); returns its raylet's pid."""
    _run([RAY, "start", "--address", f"127.0.0.1:{HEAD_PORT}", "--node-ip-address", "127.0.0.1",
          "--num-cpus", "3", "--resources", json.dumps({"gpu_sim": 2}), "--node-manager-port", str(port),
          "--disable-usage-stats"], env)
    ours = [p.pid for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] == "raylet"
            and f"--node_manager_port={port}" in " ".join(p.info["cmdline"] or [])]
    assert len(ours) == 1, ours
    return ours[0]


def _kill_tree(pid: int) -> int:
    root = psutil.Process(pid)
    victims = [root, *root.children(recursive=True)]
    for p in victims:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return len(victims)


class PeakMemory(threading.Thread):
    """Peak resident memory of all processes started after it (the test's Ray cluster, trials)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.known = {p.pid for p in psutil.process_iter()}
        self.peak, self.stop = 0, threading.Event()

    def run(self):
        while not self.stop.wait(1.0):
            total = 0
            for p in psutil.process_iter():
                if p.pid in self.known:
                    continue
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)


def _build_cache(tmp_path, env) -> str:
    images, cache = tmp_path / "images", tmp_path / "latents"
    _run([sys.executable, "-m", "platform.prepare", "synthetic-folder", "--out", str(images), "--classes", "4",
          "--per-class", "8", "--size", "32"], env)
    _run([sys.executable, "-m", "platform.prepare", "latents", "--src", str(images), "--kind", "imagenet_folder",
          "--out", str(cache), "--image-size", "32", "--tiny-vae", "--local"], env)
    return str(cache)


def test_paper_sim_sweep_on_two_nodes_survives_a_node_loss(tmp_path, shared_cache_dir):
    started = time.perf_counter()
    memory = PeakMemory()
    memory.start()
    env = _env(tmp_path, shared_cache_dir)
    cache = _build_cache(tmp_path, env)
    sweep_dir = tmp_path / "sweep"
    _run([RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(HEAD_PORT), "--num-cpus", "1",
          # with the dashboard: Ray Train frees a dead node's placement groups through its state API
          "--dashboard-port", "8277", "--disable-usage-stats"], env)
    log = open(tmp_path / "sweep.log", "w")
    proc = None
    try:
        raylet = _start_worker_node(env, 6421)
        cmd = [sys.executable, "-m", "platform.search", "smoke", "--budget", "paper-sim", "--address",
               f"127.0.0.1:{HEAD_PORT}", "--sweep-dir", str(sweep_dir), "--set", f"data_root={cache}",
               "--objectives", "fid,images_per_s"]  # the README's multi-objective search (NSGA-II)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        # the first trial has written its step-10 checkpoint and is evaluating (FID-k at step 10)
        pattern = str(sweep_dir / "trials" / "*" / "checkpoints" / "step_0000010" / "COMPLETE")
        deadline = time.time() + 240
        while not glob.glob(pattern):
            assert proc.poll() is None and time.time() < deadline, open(tmp_path / "sweep.log").read()[-3000:]
            time.sleep(0.2)
        victim = os.path.basename(glob.glob(pattern)[0].split("/checkpoints/")[0])
        newest = max(int(os.path.basename(os.path.dirname(p)).split("_")[1]) for p in
                     glob.glob(str(sweep_dir / "trials" / victim / "checkpoints" / "step_*" / "COMPLETE")))
        assert _kill_tree(raylet) >= 2  # the raylet and at least the trial's workers
        killed_at = time.time()
        _start_worker_node(env, 6431)  # the replacement machine
        proc.wait(timeout=420)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        log.close()
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        memory.stop.set()
    output = open(tmp_path / "sweep.log").read()
    assert proc.returncode == 0, output[-4000:]
    elapsed = time.perf_counter() - started
    print(f"\npaper-sim: {elapsed:.0f} s, peak memory of the cluster's processes {memory.peak / 2**30:.2f} GiB, "
          f"sweep finished {time.time() - killed_at:.0f} s after the node was killed")
    _check_results(tmp_path, sweep_dir, victim, newest)


def _check_results(tmp_path, sweep_dir, victim: str, newest_checkpoint: int) -> None:
    import mlflow
    import polars as pl
    table = pl.read_csv(sweep_dir / "trials.csv")
    assert table.height == 1 and table["status"].to_list() == ["finished"]  # the one search trial
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = open(sweep_dir / "mlflow_parent_run_id").read().strip()
    exp = client.get_run(parent).info.experiment_id
    runs = {r.info.run_name: r for r in client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'")}
    assert len(runs) == 1 and all(r.info.status == "FINISHED" for r in runs.values())
    for run in runs.values():
        metrics, tags = run.data.metrics, run.data.tags
        assert metrics["fid"] > 0 and metrics["is_mean"] >= 1.0  # Inception-architecture features with logits
        assert metrics["eval_world_size"] == 2  # both ranks sampled
        protocol = tags["fid_protocol"]
        assert "ddpm-5 cfg=1.5 guided=all n=16" in protocol and "features=inception-random" in protocol
        assert "vae=tiny-random-vae" in protocol and "imagenet_folder:" in protocol
    # the killed trial resumed from its newest checkpoint: no checkpointed step trained twice
    resumed = client.get_metric_history(runs[victim].info.run_id, "resumed_from_step")
    assert [m.value for m in resumed] == [newest_checkpoint]
    steps = [m.step for m in client.get_metric_history(runs[victim].info.run_id, "loss")]
    assert steps.count(newest_checkpoint) == 1 and sorted(set(steps)) == list(range(1, 21))
    # one Ray Train run per trial; both objectives reached Optuna
    assert sorted(os.listdir(sweep_dir / "train_runs")) == sorted(runs)
    # Ray Train and Tune hold pointers to the trial's checkpoints, not second copies of them
    from trainers.training.tune_checkpoint import POINTER_FILE
    held = [p for p in glob.glob(str(sweep_dir / "*" / "*" / "checkpoint_*")) if os.path.isdir(p)]
    assert held and all(os.listdir(p) == [POINTER_FILE] for p in held), held
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    study = optuna.load_study(study_name="smoke-paper-sim",
                              storage=JournalStorage(JournalFileBackend(str(sweep_dir / "optuna_journal.log"))))
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE]
    told = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(told) == 1 and told[0].values[0] == pytest.approx(table.filter(pl.col("phase") == "search")["fid"][0])
    assert told[0].values[1] > 0
    from report_fixtures import check_report_outputs
    check_report_outputs(str(sweep_dir))
    html = open(sweep_dir / "report.html", encoding="utf-8").read()
    assert "ddpm-5 cfg=1.5" in html  # the FID protocol is printed with the numbers
    assert "Pareto front" in html
