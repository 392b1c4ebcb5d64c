"""The search platform end to end: real Ray Tune + Optuna + DeepSpeed + MLflow (sqlite).

One sweep of the ``smoke`` space at ``smoke`` budget on the embedded local Ray (what ``make
search`` runs): a trial's training process is sent SIGTERM (a spot preemption) mid-run, then the
driver is killed mid-sweep; the same command with more trials must finish the sweep without
re-running finished trials; the preempted trial checkpointed the step SIGTERM arrived at and resumed
from it bit-exactly.  Fake credentials in the environment reach no record.  A Ray head on loopback
(``--address``), multi-worker (Ray Train) trials, a killed -9 node and a multi-objective search run
in tests/test_paper_sim.py; the driver's refusals, --dry-run and --help in tests/test_search_cli.py.
"""
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
from preemption_support import check_exact_resume, last_logged_step, preemptions
from search_support import ROOT, search_cmd, search_env
from train_support import DIST_ENV

from trainers.training.tracking import read_metrics

pytestmark = pytest.mark.slow
RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def _mlflow_children(tmp_path, parent_file):
    import mlflow
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = open(parent_file).read().strip()
    exp = client.get_run(parent).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    return client, client.get_run(parent), runs


def _finished_trials(sweep_dir):
    return sorted(glob.glob(os.path.join(sweep_dir, "trials", "*", "metrics.json")))


def _wait_for(predicate, timeout, proc, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended (rc={proc.returncode}) before {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _preempt_a_trial_then_kill_the_driver(tmp_path, env, same):
    """First driver: the vanilla baseline, then one search trial, one at a time so the kills land
    mid-run; returns (the preempted trial's dir, the step SIGTERM arrived at, whether the driver died
    during the second trial's step-20 FID-k)."""
    sweep_dir = tmp_path / "sweep"
    log = open(tmp_path / "first.log", "w")
    first = search_cmd(*same, "--trials", "1", "--max-concurrent", "1", "--num-cpus", "2")
    proc = subprocess.Popen(first, cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
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
        # 2) once that trial has finished (after its retry), kill the driver mid-way through the next
        #    one: as soon as its step-20 checkpoint is complete, most likely during that step's FID-k
        #    (the checkpoint comes first), which the resumed trial must then evaluate before going on
        _wait_for(lambda: os.path.exists(os.path.join(victim_dir, "metrics.json")), 600, proc,
                  "the killed trial to finish after its retry")
        others = lambda: [p for p in glob.glob(str(sweep_dir / "trials" / "*" / "checkpoints" / "step_0000020"
                                                   / "COMPLETE")) if not p.startswith(victim_dir + os.sep)]
        _wait_for(others, 600, proc, "a second trial's step-20 checkpoint")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
        second = os.path.dirname(os.path.dirname(os.path.dirname(others()[0])))
        killed = "after" if any(r.get("step") == 20 and "fid_k" in r for r in read_metrics(second)) else "during"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)  # the driver's local Ray
    return victim_dir, signalled_at, f"driver killed {killed} the second trial's step-20 FID-k"


def test_killed_trial_and_killed_driver_resume(tmp_path, shared_cache_dir, capsys, monkeypatch):
    from secrets_check import FAKE_SECRETS, check_no_secrets
    env = {**search_env(tmp_path, shared_cache_dir), **FAKE_SECRETS}
    sweep_dir = tmp_path / "sweep"
    # 40-step trials: checkpoints every 10 steps, FID-k (and ASHA's milestone) at step 20
    same = ("--sweep-dir", str(sweep_dir), "--set", "steps=40", "--set", "ckpt_every=10", "--set", "eval_every=20")
    victim_dir, signalled_at, kill_note = _preempt_a_trial_then_kill_the_driver(tmp_path, env, same)
    finished_before = {p: os.path.getmtime(p) for p in _finished_trials(sweep_dir)}
    assert finished_before, "no trial had finished before the driver was killed"
    # the resume cannot change the objectives (one line, nothing started), but it takes one more
    # trial than the sweep started with, two at a time
    from platform.search import main as search_main
    capsys.readouterr()
    assert search_main(["smoke", "--budget", "smoke", *same, "--objectives", "fid,images_per_s"]) == 2
    refused = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(refused) == 1 and "--objectives fid; this command asks for --objectives fid,images_per_s" in refused[0]
    result = subprocess.run(search_cmd(*same, "--trials", "2", "--max-concurrent", "2", "--num-cpus", "2"), cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resuming phase" in result.stdout and "search: 2/2 trials done" in result.stdout
    assert "best:" in result.stdout and "baseline vanilla" in result.stdout
    # finished trials were not re-run
    for path, mtime in finished_before.items():
        assert os.path.getmtime(path) == mtime, f"{path} was re-run"
    import polars as pl
    table = pl.read_csv(sweep_dir / "trials.csv")
    assert table.height == 3 and set(table["status"]) <= {"finished", "stopped"}
    assert table.filter(pl.col("phase") == "baselines")["status"].to_list() == ["finished"]
    _check_table_and_study(table, sweep_dir)
    # Tune holds pointers to the trials' checkpoints, not second copies of them
    from trainers.training.tune_checkpoint import POINTER_FILE
    tune_checkpoints = [p for p in glob.glob(str(sweep_dir / "*" / "*" / "checkpoint_*")) if os.path.isdir(p)]
    assert tune_checkpoints and all(os.listdir(p) == [POINTER_FILE] for p in tune_checkpoints), tune_checkpoints
    from report_fixtures import check_report_outputs
    check_report_outputs(str(sweep_dir))
    client, parent, children = _mlflow_children(tmp_path, sweep_dir / "mlflow_parent_run_id")
    assert parent.info.status == "FINISHED"
    assert len(children) == 3  # no duplicate MLflow runs for restarted trials
    from sweep_checks import check_parent_run, check_trial_runs
    check_trial_runs(client, children, table, eval_every=20)
    check_parent_run(client, parent, table, search_trials=2, baseline_trials=1)
    resumed = {r.info.run_name: client.get_metric_history(r.info.run_id, "resumed_from_step") for r in children}
    victim = os.path.basename(victim_dir)
    # retried from the step SIGTERM arrived at (its step in flight finished), not from step 20, and bit-exactly
    (step, seconds), = preemptions(open(tmp_path / "first.log").read())
    print(f"SIGTERM at step {signalled_at}: checkpoint of step {step} written {seconds} s after the signal; "
          f"{kill_note}")
    assert step >= signalled_at > 20 and [m.value for m in resumed[victim]] == [step]
    # every trial's MLflow run: its status, its params, one unbroken sequence of steps up to where it ended
    status_of = dict(zip(table["run_dir"].map_elements(os.path.basename, return_dtype=pl.Utf8), table["status"]))
    last_step = dict(zip(table["run_dir"].map_elements(os.path.basename, return_dtype=pl.Utf8), table["step"]))
    for run in children:
        stopped = status_of[run.info.run_name] == "stopped"
        assert run.info.status == ("KILLED" if stopped else "FINISHED")
        assert {"beta", "routing", "model", "steps"} <= set(run.data.params)
        assert ("fid_k" if stopped else "fid") in run.data.metrics
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
        assert sorted(set(steps)) == list(range(1, last_step[run.info.run_name] + 1)), run.info.run_name
    searched = [r for r in children if r.data.params["routing"] == "dtr"]
    assert len(searched) == 2 and all(0.5 <= float(r.data.params["beta"]) <= 0.95 for r in searched)
    scanned = check_no_secrets([sweep_dir, tmp_path / "runs", tmp_path / "mlflow.db"],
                               {"first driver": open(tmp_path / "first.log").read(),
                                "resumed driver": result.stdout + result.stderr},
                               client, [parent.info.run_id, *(r.info.run_id for r in children)],
                               tmp_path / "downloaded")
    assert scanned > 100  # trial dirs, checkpoints, Tune's state, reports, artifacts
    for name, value in {"DTR_CACHE_DIR": str(shared_cache_dir), "DS_ACCELERATOR": "cpu"}.items():
        monkeypatch.setenv(name, value)
    for name in DIST_ENV:
        monkeypatch.delenv(name, raising=False)  # what train() sets here is removed again afterwards
    check_exact_resume(victim_dir, str(tmp_path / "reference"), resumed_at=step)


def _check_table_and_study(table, sweep_dir) -> None:
    """trials.csv against the Optuna journal: the first driver's one search trial and the one more
    the resume asked for; COMPLETE with the final FID, PRUNED (ASHA stopped it at its FID-k milestone) with its
    last FID-k as the last intermediate value; a stopped trial has no final FID, only fid_k_last."""
    import optuna
    import polars as pl
    finished, stopped = (table.filter(pl.col("status") == s) for s in ("finished", "stopped"))
    assert all(0 < f < 1e6 for f in finished["fid"].to_list())
    assert stopped["fid"].null_count() == stopped.height and stopped["fid_k_last"].null_count() == 0
    assert all(fs.startswith("domain") for fs in table["feature_set"].to_list())
    study = optuna.load_study(study_name="smoke-smoke", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sweep_dir / "optuna_journal.log"))))
    told = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    search = table.filter(pl.col("phase") == "search")
    assert len(study.trials) == len(told) + len(pruned) == 2 == search.height
    assert sorted(t.value for t in told) == sorted(search.filter(pl.col("status") == "finished")["fid"].to_list())
    assert sorted(list(t.intermediate_values.values())[-1] for t in pruned) == sorted(
        search.filter(pl.col("status") == "stopped")["fid_k_last"].to_list())
    assert all(t.intermediate_values.get(20) is not None for t in told + pruned)
