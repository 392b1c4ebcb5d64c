"""The search platform end to end: real Ray Tune + Optuna + DeepSpeed + MLflow (sqlite).

Three sweeps of the ``smoke`` space at ``smoke`` budget:
- against a Ray head started with ``ray start --head`` on loopback (``--address``),
- on the embedded local Ray, with a trial's training process sent SIGTERM (a spot preemption)
  mid-run and then the driver killed mid-sweep; the same command again must finish the sweep
  without re-running finished trials; the preempted trial checkpointed the step SIGTERM arrived
  at and resumed from it bit-exactly (a killed -9 node: tests/test_paper_sim.py),
- bad input: one clear line, non-zero exit, nothing started.
Multi-worker (Ray Train) trials and a multi-objective search run in tests/test_paper_sim.py.
"""
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
from preemption_support import check_exact_resume, last_logged_step, preemptions
from train_support import DIST_ENV

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def _env(tmp_path, cache_dir):
    # without the torch.distributed variables an in-process training run of another test may have
    # left behind: a child would try to rendezvous on that test's (still listening) port
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and k not in DIST_ENV}
    env.update(DTR_RUNS_DIR=str(tmp_path / "runs"), DTR_CACHE_DIR=str(cache_dir),
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", RAY_DEDUP_LOGS="0",
               DS_ACCELERATOR="cpu", PYTHONUNBUFFERED="1")
    return env


def _search(*args):
    return [sys.executable, "-m", "platform.search", "smoke", "--budget", "smoke", *args]


def _mlflow_children(tmp_path, parent_file):
    import mlflow
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = open(parent_file).read().strip()
    exp = client.get_run(parent).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    return client, client.get_run(parent), runs


def _finished_trials(sweep_dir):
    return sorted(glob.glob(os.path.join(sweep_dir, "trials", "*", "metrics.json")))


def test_bad_input_is_one_line_and_starts_nothing(tmp_path, shared_cache_dir):
    env = _env(tmp_path, shared_cache_dir)
    cases = [
        ([sys.executable, "-m", "platform.search", "no_such_space"], "unknown search space"),
        (_search("--budget", "galactic"), "unknown budget"),
        (_search("--set", "beta=7"), "beta"),
        (_search("--set", "no_such_field=1"), "run-config field"),
        (_search("--trials", "0"), "--trials"),
        (_search("--address", "127.0.0.1:9"), "cannot reach the Ray cluster"),
    ]
    for cmd, needle in cases:
        result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (cmd, result.stderr[-500:])
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], (cmd, result.stderr)
    mlflow_down = {**env, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    result = subprocess.run(_search(), cwd=ROOT, env=mlflow_down, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "cannot reach the MLflow server" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_changed_settings_on_resume_are_refused_in_one_line(tmp_path, shared_cache_dir):
    """A sweep directory remembers its settings (sweep.json); rerunning it with another --seed /
    --objectives / --set or fewer --trials names the differences instead of ignoring them; more
    --trials and another --max-concurrent apply (the resume in test_killed_trial_and_killed_driver_resume)."""
    from platform.sweep import (
        RESUMABLE,
        SweepOptions,
        check_resume,
        resume_settings,
        sweep_settings,
        write_settings,
    )
    opts = dict(space="smoke", budget="smoke")
    write_settings(str(tmp_path), sweep_settings(SweepOptions(**opts)))
    check_resume(str(tmp_path), sweep_settings(SweepOptions(**opts)))
    check_resume(str(tmp_path), sweep_settings(SweepOptions(**opts, trials=4, max_concurrent=1)))  # applied
    with pytest.raises(ValueError) as err:
        check_resume(str(tmp_path), sweep_settings(SweepOptions(**opts, trials=4, seed=3)))
    message = str(err.value)
    assert "started with --seed 0;" in message and "asks for --seed 3," in message and "\n" not in message
    assert "--name" in message and "--fresh" in message
    changed = SweepOptions(**opts, objectives=("fid", "images_per_s"), overrides=(("steps", 40),))
    with pytest.raises(ValueError, match="--objectives fid,images_per_s, --set steps=40"):
        check_resume(str(tmp_path), sweep_settings(changed))
    with pytest.raises(ValueError, match="holds a sweep of --trials 2; --trials 1 cannot take trials back"):
        check_resume(str(tmp_path), sweep_settings(SweepOptions(**opts, trials=1)))
    edited = {**sweep_settings(SweepOptions(**opts)), "search_params": {"beta": "in [0.5, 0.9] step 0.05"}}
    write_settings(str(tmp_path), edited)  # the space's code changed since the sweep started
    with pytest.raises(ValueError, match=r"started with searched parameters beta in \[0.5, 0.9\] step 0.05; "
                                         r"this command asks for searched parameters beta in \[0.5, 0.95\]"):
        check_resume(str(tmp_path), sweep_settings(SweepOptions(**opts)))
    # a resume without --trials / --max-concurrent keeps the raised values; a sweep started before
    # resumes applied them still refuses a change
    write_settings(str(tmp_path), sweep_settings(SweepOptions(**opts, trials=5, max_concurrent=1)))
    kept = resume_settings(str(tmp_path), SweepOptions(**opts))
    assert (kept["trials"], kept["max_concurrent"]) == (5, 1)
    old = {k: v for k, v in sweep_settings(SweepOptions(**opts)).items() if k not in (RESUMABLE, "search_params")}
    write_settings(str(tmp_path), old)
    with pytest.raises(ValueError, match="started with --trials 2; this command asks for --trials 3"):
        check_resume(str(tmp_path), sweep_settings(SweepOptions(**opts, trials=3)))
    # through the CLI: exit 2, one line, nothing started (no Ray, no MLflow store)
    env = _env(tmp_path, shared_cache_dir)
    result = subprocess.run(_search("--sweep-dir", str(tmp_path), "--seed", "5"), cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "--seed 0" in lines[0], result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


def test_dry_run_and_help_start_nothing(tmp_path, shared_cache_dir):
    """``--dry-run`` prints the trials and an estimate without Ray; ``--help`` does not import torch."""
    env = _env(tmp_path, shared_cache_dir)
    code = ("import runpy, sys\nsys.argv = ['platform.search', *sys.argv[1:]]\ntry:\n"
            "    runpy.run_module('platform.search', run_name='__main__')\nexcept SystemExit as e:\n"
            "    print('rc', e.code)\n"
            "print('loaded', sorted(m for m in ('torch', 'ray', 'mlflow', 'optuna') if m in sys.modules))")
    dry = subprocess.run([sys.executable, "-c", code, "routing", "--budget", "smoke", "--dry-run", "--trials", "3"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out = dry.stdout
    assert "rc 0" in out, dry.stderr[-2000:]
    assert "baselines: DTR, R-TR, vanilla x seeds [0] = 3 trials" in out
    assert "search: 3 Optuna trials" in out and "routing_clusters in 2..8" in out and "estimate: ~" in out
    assert "'ray'" not in out.splitlines()[-1] and not (tmp_path / "runs").exists()
    helped = subprocess.run([sys.executable, "-c", code, "--help"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert "rc 0" in helped.stdout and "--dry-run" in helped.stdout
    assert helped.stdout.splitlines()[-1] == "loaded []"


def test_invalid_ranges_are_rejected():
    from search_spaces import Float, Int, SearchSpace
    with pytest.raises(ValueError, match="low"):
        SearchSpace("x", "x", params={"beta": Float(0.9, 0.5)}).validate()
    with pytest.raises(ValueError, match="low"):
        SearchSpace("x", "x", params={"routing_clusters": Int(4, 4)}).validate()
    with pytest.raises(ValueError, match="not a run-config field"):
        SearchSpace("x", "x", params={"gamma_ray": Float(0.1, 0.5)}).validate()
    with pytest.raises(ValueError, match="beta"):
        SearchSpace("x", "x", params={"beta": Float(0.5, 0.9)}, baselines={"bad": {"beta": 2.0}}).validate()


def test_every_named_space_validates_and_builds_trial_configs():
    from search_spaces import all_spaces
    from search_spaces.budgets import BUDGETS
    from search_spaces.resolve import check_overrides
    spaces = all_spaces()
    for required in ("dtr_beta", "dtr_alpha", "routing", "loss_weighting", "ant_clusters", "multi_expert",
                     "learned_vs_fixed", "smoke"):
        assert required in spaces
    assert {"vanilla", "R-TR"} <= set(spaces["dtr_beta"].baselines)
    for space in spaces.values():
        space.validate()
        for budget in BUDGETS.values():
            check_overrides(space, budget, {})


def test_sweep_on_a_ray_head_end_to_end(tmp_path, shared_cache_dir):
    """`ray start --head` on loopback + the driver with --address: the whole smoke space.  Fake
    credentials in the environment (RAY_AUTH_TOKEN the cluster's real one) reach no record."""
    from secrets_check import FAKE_SECRETS, check_no_secrets
    env = {**_env(tmp_path, shared_cache_dir), **FAKE_SECRETS}
    port = 6399
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    start = subprocess.run([ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                            "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stderr[-2000:]
    sweep_dir = tmp_path / "sweep"
    try:
        result = subprocess.run(_search("--address", f"127.0.0.1:{port}", "--sweep-dir", str(sweep_dir)),
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    import polars as pl
    table = pl.read_csv(sweep_dir / "trials.csv")
    assert table.height == 3  # 1 baseline (vanilla) + 2 Optuna trials
    # ASHA may stop the worse search trial at its first FID-k milestone (step 10)
    assert table.filter(pl.col("phase") == "baselines")["status"].to_list() == ["finished"]
    assert set(table["status"]) <= {"finished", "stopped"} and "finished" in table["status"].to_list()
    assert set(table["phase"]) == {"baselines", "search"}
    finished, stopped = (table.filter(pl.col("status") == s) for s in ("finished", "stopped"))
    assert all(0 < f < 1e6 for f in finished["fid"].to_list())
    # a stopped trial has no final FID: its last FID-k is fid_k_last, never fid
    assert stopped["fid"].null_count() == stopped.height and stopped["fid_k_last"].null_count() == 0
    assert all(fs.startswith("domain") for fs in table["feature_set"].to_list())
    assert "best:" in result.stdout and "baseline vanilla" in result.stdout
    from report_fixtures import check_report_outputs
    check_report_outputs(str(sweep_dir))
    client, parent, children = _mlflow_children(tmp_path, sweep_dir / "mlflow_parent_run_id")
    assert parent.info.status == "FINISHED"
    assert len(children) == 3
    status_of = dict(zip(table["run_dir"].map_elements(os.path.basename, return_dtype=pl.Utf8), table["status"]))
    for run in children:
        stopped = status_of[run.info.run_name] == "stopped"
        assert run.info.status == ("KILLED" if stopped else "FINISHED")
        assert {"beta", "routing", "model", "steps"} <= set(run.data.params)
        history = client.get_metric_history(run.info.run_id, "loss")
        assert [m.step for m in history] == list(range(1, 11 if stopped else 21))
        assert ("fid_k" if stopped else "fid") in run.data.metrics
    searched = [r for r in children if r.data.params["routing"] == "dtr"]
    assert len(searched) == 2 and all(0.5 <= float(r.data.params["beta"]) <= 0.95 for r in searched)
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna_journal.log")))
    study = optuna.load_study(study_name="smoke-smoke", storage=storage)
    states = optuna.trial.TrialState
    told = [t for t in study.trials if t.state == states.COMPLETE]
    pruned = [t for t in study.trials if t.state == states.PRUNED]
    search = table.filter(pl.col("phase") == "search")
    assert len(told) + len(pruned) == 2 == search.height
    # COMPLETE with the final FID; PRUNED (ASHA stopped it) with its FID-k as intermediate values
    assert sorted(t.value for t in told) == sorted(search.filter(pl.col("status") == "finished")["fid"].to_list())
    assert sorted(list(t.intermediate_values.values())[-1] for t in pruned) == sorted(
        search.filter(pl.col("status") == "stopped")["fid_k_last"].to_list())
    assert all(t.intermediate_values.get(10) is not None for t in told + pruned)
    scanned = check_no_secrets([sweep_dir, tmp_path / "runs", tmp_path / "mlflow.db"],
                               {"driver output": result.stdout + result.stderr, "ray start": start.stdout + start.stderr},
                               client, [parent.info.run_id, *(r.info.run_id for r in children)], tmp_path / "downloaded")
    assert scanned > 100  # trial dirs, checkpoints, Tune's state, reports, artifacts


def _wait_for(predicate, timeout, proc, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended (rc={proc.returncode}) before {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_trial_and_killed_driver_resume(tmp_path, shared_cache_dir, capsys, monkeypatch):
    env = _env(tmp_path, shared_cache_dir)
    sweep_dir = tmp_path / "sweep"
    # longer trials and one at a time so the kills land mid-run
    same = ("--sweep-dir", str(sweep_dir), "--set", "steps=60", "--set", "ckpt_every=10", "--set", "eval_every=30")
    cmd = _search(*same, "--max-concurrent", "1", "--num-cpus", "2")
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # 1) SIGTERM (a spot preemption) the training process of the first trial a few steps past its
        #    step-20 checkpoint: it finishes the step in flight, checkpoints that step, exits; Tune retries it
        ckpt = lambda: glob.glob(str(sweep_dir / "trials" / "*" / "checkpoints" / "step_0000020" / "COMPLETE"))
        _wait_for(ckpt, 600, proc, "the first checkpoint")
        victim_dir = os.path.dirname(os.path.dirname(os.path.dirname(ckpt()[0])))
        _wait_for(lambda: last_logged_step(victim_dir) >= 23, 600, proc, "steps past the checkpoint")
        signalled_at = last_logged_step(victim_dir)
        pid = int(open(os.path.join(victim_dir, "worker.pid")).read())
        os.kill(pid, signal.SIGTERM)
        # 2) once that trial has finished (after its retry), kill the driver mid-sweep
        _wait_for(lambda: os.path.exists(os.path.join(victim_dir, "metrics.json")), 600, proc,
                  "the killed trial to finish after its retry")
        _wait_for(lambda: len(glob.glob(str(sweep_dir / "trials" / "*" / "checkpoints" / "*" / "COMPLETE")))
                  > 2, 600, proc, "a second trial to checkpoint")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "ray"), "stop", "--force"], env=env,
                   capture_output=True, timeout=120)
    finished_before = {p: os.path.getmtime(p) for p in _finished_trials(sweep_dir)}
    assert finished_before, "no trial had finished before the driver was killed"
    # the resume cannot change the objectives (one line, nothing started), but it takes one more
    # trial than the sweep started with, two at a time
    from platform.search import main as search_main
    capsys.readouterr()
    assert search_main(["smoke", "--budget", "smoke", *same, "--objectives", "fid,images_per_s"]) == 2
    refused = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(refused) == 1 and "--objectives fid; this command asks for --objectives fid,images_per_s" in refused[0]
    more = _search(*same, "--trials", "3", "--max-concurrent", "2", "--num-cpus", "2")
    result = subprocess.run(more, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resuming phase" in result.stdout and "search: 3/3 trials done" in result.stdout
    # finished trials were not re-run
    for path, mtime in finished_before.items():
        assert os.path.getmtime(path) == mtime, f"{path} was re-run"
    import polars as pl
    table = pl.read_csv(sweep_dir / "trials.csv")
    assert table.height == 4 and set(table["status"]) <= {"finished", "stopped"}
    assert table.filter(pl.col("phase") == "search").height == 3
    import optuna
    study = optuna.load_study(study_name="smoke-smoke", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sweep_dir / "optuna_journal.log"))))
    assert len(study.trials) == 3  # exactly one more Optuna trial
    client, parent, children = _mlflow_children(tmp_path, sweep_dir / "mlflow_parent_run_id")
    assert len(children) == 4  # no duplicate MLflow runs for restarted trials
    from sweep_checks import check_parent_run, check_trial_runs
    check_trial_runs(client, children, table, eval_every=30)
    check_parent_run(client, parent, table, search_trials=3, baseline_trials=1)
    resumed = {r.info.run_name: client.get_metric_history(r.info.run_id, "resumed_from_step") for r in children}
    victim = os.path.basename(victim_dir)
    # retried from the step SIGTERM arrived at (its step in flight finished), not from step 20, and bit-exactly
    (step, seconds), = preemptions(open(tmp_path / "first.log").read())
    print(f"SIGTERM at step {signalled_at}: checkpoint of step {step} written {seconds} s after the signal")
    assert step >= signalled_at > 20 and [m.value for m in resumed[victim]] == [step]
    for name, value in {"DTR_CACHE_DIR": str(shared_cache_dir), "DS_ACCELERATOR": "cpu"}.items():
        monkeypatch.setenv(name, value)
    for name in DIST_ENV:
        monkeypatch.delenv(name, raising=False)  # what train() sets here is removed again afterwards
    check_exact_resume(victim_dir, str(tmp_path / "reference"), resumed_at=step)
    # the loss trajectory of every trial is one unbroken sequence of steps up to where it ended
    last_step = dict(zip(table["run_dir"].map_elements(os.path.basename, return_dtype=pl.Utf8), table["step"]))
    for run in children:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
        assert sorted(set(steps)) == list(range(1, last_step[run.info.run_name] + 1)), run.info.run_name
