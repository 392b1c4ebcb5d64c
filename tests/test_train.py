"""The DeepSpeed trainer (trainers/train.py) and its CLI, end to end: a real DeepSpeed engine
(CPU, gloo), a real MLflow sqlite store in a temp dir, real Fashion-MNIST, no mocks.

Cost: a process's first ``train()`` pays ~5-10 s of torch/DeepSpeed start-up (warm op cache),
later ones ~1-2 s of ``deepspeed.initialize``; training steps dominate, so the runs are few and
shared through module-scoped fixtures:

* ``resume_runs``: the smoke preset with R-TR + ANT-UW trained ``RESUME_STEPS`` steps straight
  through, and the same config trained ``RESUME_STEPS/2`` steps then resumed to the end
  (with an incomplete checkpoint planted in between);
* ``eval_run``: a short smoke run with DTR routing and the final domain-feature evaluation;
* a lr=1e30 run that must die on a NaN loss (in process and through the CLI).
"""
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from train_support import (
    DIST_ENV,
    RESUME_STEPS,
    ROOT,
    artifact_names,
    cli,
    ds_module_state,
    error_lines,
    load,
    mlflow_client,
    resume_config,
    run_id_of,
    smoke,
    trajectory,
)

from trainers.config import RunConfig
from trainers.training.checkpoint import (
    COMPLETE,
    ConfigMismatch,
    complete_checkpoints,
    latest_checkpoint,
    tag_for,
)
from trainers.training.loop import NonFiniteLossError
from trainers.training.run import train
from trainers.training.tracking import read_metrics

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------- shared runs

@pytest.fixture(scope="module")
def resume_runs(train_env):
    env = train_env
    half = RESUME_STEPS // 2
    full_cfg = resume_config(env, "full", RESUME_STEPS)
    reports = []

    def report(metrics, path):
        reports.append({"metrics": dict(metrics), "path": path,
                        "exists": bool(path) and os.path.isdir(path),
                        "complete": bool(path) and os.path.exists(os.path.join(path, COMPLETE))})

    full_result = train(full_cfg, report=report, threads=1)

    split_cfg = resume_config(env, "split", RESUME_STEPS)
    train(split_cfg.replace(steps=half), threads=1)
    run_id_after_half = run_id_of(split_cfg)
    resumed_from = latest_checkpoint(split_cfg.run_dir)
    # A checkpoint cut off mid-write, newer than the last complete one: resume must skip it
    # (if it did not, DeepSpeed would load truncated files or the run would restart at half+1).
    torn = os.path.join(os.path.dirname(resumed_from), tag_for(half + 1))
    shutil.copytree(resumed_from, torn)
    os.remove(os.path.join(torn, COMPLETE))
    for dirpath, _, files in os.walk(torn):
        for name in files:
            if name.endswith(".pt"):
                with open(os.path.join(dirpath, name), "r+b") as f:
                    f.truncate(16)
    # ... and the log lines a killed run wrote past its last checkpoint: resume must drop them.
    with open(os.path.join(split_cfg.run_dir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps({"step": half + 1, "loss": 123.0, "mse": 1.0, "vb": 1.0}) + "\n")
        f.write(json.dumps({"step": half + 2, "fid_k": 99.0, "feature_set": "domain"}) + "\n")
    latest_before_resume = latest_checkpoint(split_cfg.run_dir)
    split_result = train(split_cfg, resume=split_cfg.run_dir, threads=1)
    return dict(full_cfg=full_cfg, split_cfg=split_cfg, full_result=full_result, split_result=split_result,
                reports=reports, resumed_from=resumed_from, torn=torn, latest_before_resume=latest_before_resume,
                run_id_after_half=run_id_after_half)


# ------------------------------------------------------------------------ 1. exact resume

def test_resume_reproduces_every_logged_loss_exactly(resume_runs):
    full = read_metrics(resume_runs["full_cfg"].run_dir)
    split = read_metrics(resume_runs["split_cfg"].run_dir)
    assert [r["step"] for r in full] == list(range(1, RESUME_STEPS + 1))
    assert [r["step"] for r in split] == list(range(1, RESUME_STEPS + 1))
    assert all(f"uw_s{j}" in full[-1] for j in range(4))  # the ANT-UW group was trained and logged
    for a, b in zip(trajectory(full), trajectory(split)):
        assert a == b, f"trajectories diverge at step {a['step']}: {a} vs {b}"  # exact ==, not approx
    # the trajectory is not trivially constant (the model did learn)
    assert full[-1]["loss"] < full[0]["loss"]


def test_resume_reproduces_final_weights_and_routing_masks_bit_exactly(resume_runs):
    full_ckpt = latest_checkpoint(resume_runs["full_cfg"].run_dir)
    split_ckpt = latest_checkpoint(resume_runs["split_cfg"].run_dir)
    assert full_ckpt.endswith(tag_for(RESUME_STEPS)) and split_ckpt.endswith(tag_for(RESUME_STEPS))
    ema_full, ema_split = load(os.path.join(full_ckpt, "ema.pt")), load(os.path.join(split_ckpt, "ema.pt"))
    assert ema_full.keys() == ema_split.keys()
    for k in ema_full:
        assert torch.equal(ema_full[k], ema_split[k]), f"EMA tensor {k} differs"
    masks = ema_full["routing_masks"]
    assert masks.numel() and 0 < masks.float().mean() < 1  # R-TR masks really route
    live_full, live_split = ds_module_state(full_ckpt), ds_module_state(split_ckpt)
    assert live_full.keys() == live_split.keys()
    for k in live_full:
        assert torch.equal(live_full[k], live_split[k]), f"live tensor {k} differs"
    assert torch.equal(live_full["model.routing_masks"], masks)
    assert "uw.log_vars" in live_full and live_full["uw.log_vars"].abs().sum() > 0  # UW s_j moved


def test_resumed_run_logs_into_the_same_mlflow_run(resume_runs):
    cfg = resume_runs["split_cfg"]
    assert run_id_of(cfg) == resume_runs["run_id_after_half"]
    client = mlflow_client()
    run = client.get_run(run_id_of(cfg))
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, RESUME_STEPS + 1))  # no gap, no duplicate
    full_hist = client.get_metric_history(run_id_of(resume_runs["full_cfg"]), "loss")
    assert {m.step: m.value for m in history} == {m.step: m.value for m in full_hist}


# ----------------------------------------------------------- 2. resume refuses other configs

def test_resume_refuses_a_different_config(resume_runs):
    cfg = resume_runs["full_cfg"]
    before = read_metrics(cfg.run_dir)
    with pytest.raises(ConfigMismatch, match="beta"):
        train(cfg.replace(beta=0.5), resume=cfg.run_dir, mlflow_enabled=False, threads=1)
    with pytest.raises(ConfigMismatch, match="weighting"):
        train(cfg.replace(weighting="min_snr"), resume=latest_checkpoint(cfg.run_dir), mlflow_enabled=False,
              threads=1)
    assert read_metrics(cfg.run_dir) == before  # nothing was touched


def test_cli_resume_mismatch_prints_one_error_line(resume_runs, train_env):
    env = train_env
    cfg = resume_runs["full_cfg"].replace(beta=0.5)
    config_file = env / "mismatch.json"
    config_file.write_text(cfg.to_json())
    proc = cli("--preset", "smoke", "--config", str(config_file), "--resume", cfg.run_dir, "--threads", "1")
    assert proc.returncode != 0
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "beta" in lines[0]
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------- 3. non-finite loss

def test_nan_loss_stops_the_run_and_fails_the_mlflow_run(train_env):
    env = train_env
    cfg = smoke(env, "nan", lr=1e30, steps=50, final_eval_samples=0)  # AdamW step ~ lr: inf/NaN at step 2
    with pytest.raises(NonFiniteLossError, match="step"):
        train(cfg, threads=1)
    assert len(read_metrics(cfg.run_dir)) <= 3  # it stopped within a few steps, not at step 50
    assert latest_checkpoint(cfg.run_dir) is None
    run = mlflow_client().get_run(run_id_of(cfg))
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("NonFiniteLossError")



def test_resume_ignored_the_torn_checkpoint(resume_runs):
    half = RESUME_STEPS // 2
    assert resume_runs["resumed_from"].endswith(tag_for(half))
    assert resume_runs["latest_before_resume"] == resume_runs["resumed_from"]
    torn = resume_runs["torn"]
    assert os.path.isdir(torn) and not os.path.exists(os.path.join(torn, COMPLETE))
    assert torn not in complete_checkpoints(resume_runs["split_cfg"].run_dir)


# -------------------------------------------------------------------- 5. MLflow content

def test_mlflow_params_metrics_and_artifacts(resume_runs):
    cfg = resume_runs["full_cfg"]
    client = mlflow_client()
    run = client.get_run(run_id_of(cfg))
    assert run.info.status == "FINISHED"
    assert run.data.params == {k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else str(v)
                               for k, v in cfg.to_dict().items()}
    assert RunConfig.from_dict(json.loads(run.data.tags["dtr.config"])) == cfg  # the exact config, in full
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, RESUME_STEPS + 1))
    jsonl = read_metrics(cfg.run_dir)
    assert {m.step: m.value for m in history} == {r["step"]: r["loss"] for r in jsonl}
    for r in jsonl:
        assert isinstance(r["step"], int) and math.isfinite(r["loss"])
    assert "deepspeed_init_s" in run.data.metrics
    assert not run.info.artifact_uri.replace("file://", "").startswith(ROOT)  # nothing written into the repo
    names = artifact_names(client, run.info.run_id)
    assert "metrics.json" in names and "config.json" in names
    assert "routing_mask.png" in names  # R-TR is active
    assert "samples.png" not in names  # final_eval_samples=0: no samples drawn


def test_final_report_of_a_run_without_evaluation(resume_runs):
    # eval_every=0: no metric to report before the end, so the only report is the final one
    # (every Tune report must carry the metric), with the complete final checkpoint.
    reports = resume_runs["reports"]
    assert [r["metrics"]["final"] for r in reports] == [True]
    last = reports[-1]
    assert last["metrics"]["step"] == RESUME_STEPS and last["exists"] and last["complete"]
    assert last["path"].endswith(tag_for(RESUME_STEPS))
    # keep=2: older complete checkpoints were pruned
    assert len(complete_checkpoints(resume_runs["full_cfg"].run_dir)) == 2


# ------------------------------------------------------- 6. training + domain-feature evaluation

@pytest.fixture(scope="module")
def eval_run(train_env):
    env = train_env
    # checkpoints at 5, 10, 15 (+ final 20), FID-k at 10: reports at 10, 15 and the final one at 20
    cfg = smoke(env, "eval", routing="dtr", beta=0.8, steps=20, log_every=5, ckpt_every=5, eval_every=10,
                final_eval_samples=64, feature_set="domain")
    reports = []

    def report(metrics, path):
        reports.append({**metrics, "_path": path, "_exists": bool(path) and os.path.isdir(path),
                        "_complete": bool(path) and os.path.exists(os.path.join(path, COMPLETE))})
        if metrics["step"] == 10:  # the run as it stood at its first report (a kill would land here)
            shutil.copytree(cfg.run_dir, cfg.run_dir + "-at-10")

    result = train(cfg, report=report, threads=1)
    return cfg, result, reports


def test_smoke_training_with_domain_evaluation(eval_run):
    cfg, result, _ = eval_run
    assert math.isfinite(result["fid"]) and result["fid"] >= 0
    assert 0.0 <= result["precision"] <= 1.0 and 0.0 <= result["recall"] <= 1.0
    assert str(result["feature_set"]).startswith("domain")
    with open(os.path.join(cfg.run_dir, "metrics.json")) as f:
        saved = json.load(f)
    for key in ("fid", "precision", "recall", "feature_set"):
        assert saved[key] == result[key]
    assert RunConfig.from_dict(saved["config"]) == cfg
    with open(os.path.join(cfg.run_dir, "config.json")) as f:  # written before step 1
        assert RunConfig.from_dict(json.load(f)) == cfg
    # metrics.jsonl: one object per logged step (log_every=5), plus the FID-k record
    records = read_metrics(cfg.run_dir)
    assert [r["step"] for r in records if "loss" in r] == [5, 10, 15, 20]
    fid_k = [r for r in records if "fid_k" in r]
    assert [r["step"] for r in fid_k] == [10] and math.isfinite(fid_k[0]["fid_k"])
    assert fid_k[0]["feature_set"].startswith("domain")
    client = mlflow_client()
    run = client.get_run(run_id_of(cfg))
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == [5, 10, 15, 20]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "fid")] == [20]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "fid_k")] == [10]
    assert run.data.tags["feature_set"] == result["feature_set"]
    assert {"metrics.json", "samples.png", "routing_mask.png"} <= artifact_names(client, run.info.run_id)
    assert os.path.exists(os.path.join(cfg.run_dir, "samples.png"))


def test_report_called_at_checkpoints_and_at_the_end(eval_run):
    _, result, reports = eval_run
    # the checkpoint of step 5 has no metric yet (no FID-k before 10): it is not reported alone
    assert [(r["step"], r["final"]) for r in reports] == [(10, False), (15, False), (20, True)]
    for r in reports:
        assert r["_exists"] and r["_complete"], r  # existed and was complete when reported
        assert r["_path"].endswith(tag_for(r["step"]))
        assert math.isfinite(r["fid"])
    assert reports[0]["fid"] == reports[0]["fid_k"] and math.isfinite(reports[0]["loss"])
    assert reports[-1]["fid"] == result["fid"] and reports[-1]["precision"] == result["precision"]


def test_evaluate_cli_scores_a_finished_run(eval_run, tmp_path):
    """``python -m trainers.evaluate RUN_DIR``: the README command, on the run's EMA weights."""
    cfg, result, _ = eval_run
    out = tmp_path / "eval.json"
    child_env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    child_env["OMP_NUM_THREADS"] = "1"  # as the run itself (threads=1): same float summation order
    proc = subprocess.run([sys.executable, "-m", "trainers.evaluate", cfg.run_dir, "--samples", "64",
                           "--out", str(out)], cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = json.loads(out.read_text())
    assert scores["checkpoint"].endswith(tag_for(cfg.steps))
    # same EMA weights, same sample seed and count, same feature set: the run's own final scores
    assert scores["feature_set"] == result["feature_set"]
    assert scores["fid"] == pytest.approx(result["fid"], rel=1e-3)
    bad = subprocess.run([sys.executable, "-m", "trainers.evaluate", str(tmp_path / "nothing")], cwd=ROOT,
                         env=child_env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(error_lines(bad.stderr)) == 1


@pytest.mark.parametrize("killed_at", ["during", "after", "past"])
def test_resume_reports_the_last_fid_k(eval_run, tmp_path, killed_at):
    """Killed after the step-10 checkpoint and ``during`` its FID-k (the checkpoint comes first):
    the resumed run evaluates step 10 before training on.  Killed ``after`` it, or ``past`` it (at
    the step-15 checkpoint), maybe before the report reached the scheduler: it reports the recorded
    FID-k of step 10 again, without evaluating.  Either way ASHA's rung and every later report carry
    the FID-k the uninterrupted run reported, and the final scores match."""
    cfg, result, reports = eval_run
    killed = tmp_path / "killed"
    shutil.copytree(cfg.run_dir if killed_at == "past" else cfg.run_dir + "-at-10", killed)
    if killed_at == "past":
        shutil.rmtree(killed / "checkpoints" / tag_for(20))
        os.remove(killed / "metrics.json")
    resumed_at = 15 if killed_at == "past" else 10
    assert os.path.basename(complete_checkpoints(str(killed))[-1]) == tag_for(resumed_at)
    os.remove(killed / "mlflow_run_id")  # a run of its own in MLflow
    kept = [r for r in read_metrics(str(killed)) if killed_at != "during" or "fid_k" not in r]
    (killed / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    resumed_reports = []
    resumed = cfg.replace(run_dir=str(killed), run_name=f"eval-killed-{killed_at}")
    train(resumed, resume=str(killed), report=lambda m, path: resumed_reports.append(dict(m)), threads=1)
    steps = [(10, False), (20, True)] if killed_at == "past" else [(10, False), (15, False), (20, True)]
    assert [(r["step"], r["final"]) for r in resumed_reports] == steps
    assert [r["fid_k"] for r in resumed_reports[:-1]] == [reports[0]["fid_k"]] * (len(steps) - 1)
    assert resumed_reports[-1]["fid"] == result["fid"]
    assert [r["step"] for r in read_metrics(str(killed)) if "fid_k" in r] == [10]  # evaluated once
