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
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from trainers.checkpoint import COMPLETE, ConfigMismatch, complete_checkpoints, latest_checkpoint, tag_for
from trainers.config import RunConfig
from trainers.presets import preset_config
from trainers.tracking import read_metrics
from trainers.train import NonFiniteLossError, train

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The issue asks for 2000 vs 1000+1000 steps.  Measured here (2 CPU cores shared with other
# work, threads=1): the smoke preset with R-TR + ANT-UW runs at ~110 img/s (~0.15 s/step) on a
# quiet box and 2-3x slower under load, so 2000 steps cost ~5 min per run and 1000 ~2.5 min:
# far over the ~4 min budget of this file, which needs two runs of N steps.  400 steps took
# 180-270 s for the pair of runs (file: 3.5-7.5 min), so we use 200 (N/2 = 100 + 100).
RESUME_STEPS = 200
# Keys of a metrics.jsonl record that are timings/memory, not part of the trajectory.
NON_DETERMINISTIC = {"images_per_s", "peak_memory_mb"}
DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


# --------------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def env(tmp_path_factory, shared_cache_dir):
    """Runs dir + MLflow sqlite store in a temp dir, the session's shared cache (domain classifier,
    reference statistics); restores global torch/RNG state afterwards."""
    root = tmp_path_factory.mktemp("train")
    db = root / "mlflow.db"
    saved = (torch.get_num_threads(), torch.get_rng_state(), random.getstate(), np.random.get_state())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DTR_RUNS_DIR", str(root / "runs"))
        mp.setenv("DTR_CACHE_DIR", shared_cache_dir)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")  # 4 slashes: db is absolute
        mp.setenv("DS_ACCELERATOR", "cpu")
        yield root
    torch.set_num_threads(saved[0])
    torch.set_rng_state(saved[1])
    random.setstate(saved[2])
    np.random.set_state(saved[3])


def smoke(root, name, **overrides) -> RunConfig:
    return preset_config("smoke", run_name=name, run_dir=str(root / "runs" / name), **overrides)


def resume_config(root, name, steps) -> RunConfig:
    # routing="random" (R-TR masks), weighting="ant_uw" (UW group + stratified timesteps);
    # global_batch must be divisible by uw_clusters.
    return smoke(root, name, routing="random", weighting="ant_uw", uw_clusters=4, global_batch=16,
                 micro_batch=16, steps=steps, ckpt_every=RESUME_STEPS // 4, final_eval_samples=0)


def mlflow_client():
    import mlflow
    return mlflow.MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


def run_id_of(cfg: RunConfig) -> str:
    with open(os.path.join(cfg.run_dir, "mlflow_run_id")) as f:
        return f.read().strip()


def artifact_names(client, run_id) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id)}


def cli(*args, env_extra=None, timeout=300) -> subprocess.CompletedProcess:
    """``python -m trainers.train ARGS`` from the repo root, without the torch.distributed
    variables train() put into this process (the child would collide with our TCP store)."""
    child_env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    child_env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "trainers.train", *args], cwd=ROOT, env=child_env,
                          capture_output=True, text=True, timeout=timeout)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def trajectory(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in NON_DETERMINISTIC} for r in records]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def ds_module_state(ckpt_dir: str) -> dict:
    return load(os.path.join(ckpt_dir, "mp_rank_00_model_states.pt"))["module"]


# ---------------------------------------------------------------------------- shared runs

@pytest.fixture(scope="module")
def resume_runs(env):
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


def test_cli_resume_mismatch_prints_one_error_line(resume_runs, env):
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

def test_nan_loss_stops_the_run_and_fails_the_mlflow_run(env):
    cfg = smoke(env, "nan", lr=1e30, steps=50, final_eval_samples=0)  # AdamW step ~ lr: inf/NaN at step 2
    with pytest.raises(NonFiniteLossError, match="step"):
        train(cfg, threads=1)
    assert len(read_metrics(cfg.run_dir)) <= 3  # it stopped within a few steps, not at step 50
    assert latest_checkpoint(cfg.run_dir) is None
    run = mlflow_client().get_run(run_id_of(cfg))
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("NonFiniteLossError")


def test_cli_nan_loss_exits_3(env):
    run_dir = env / "runs" / "nan_cli"
    proc = cli("--preset", "smoke", "--lr", "1e30", "--steps", "50", "--final-eval-samples", "0", "--threads",
               "1", "--run-name", "nan_cli", "--run-dir", str(run_dir))
    assert proc.returncode == 3, proc.stderr[-3000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "loss became" in lines[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    run = mlflow_client().get_run((run_dir / "mlflow_run_id").read_text().strip())
    assert run.info.status == "FAILED"


# ------------------------------------------------------------------ 4. incomplete checkpoints

def test_latest_checkpoint_skips_incomplete(tmp_path):
    root = tmp_path / "checkpoints"
    for step, complete in ((10, True), (20, True), (30, False)):
        d = root / tag_for(step)
        d.mkdir(parents=True)
        if complete:
            (d / COMPLETE).write_text(str(step))
    assert latest_checkpoint(str(tmp_path)) == str(root / tag_for(20))
    assert complete_checkpoints(str(tmp_path)) == [str(root / tag_for(10)), str(root / tag_for(20))]


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
    assert run.data.params == {k: str(v) for k, v in cfg.to_dict().items()}
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, RESUME_STEPS + 1))
    jsonl = read_metrics(cfg.run_dir)
    assert {m.step: m.value for m in history} == {r["step"]: r["loss"] for r in jsonl}
    for r in jsonl:
        assert isinstance(r["step"], int) and math.isfinite(r["loss"])
    assert "deepspeed_init_s" in run.data.metrics
    assert not run.info.artifact_uri.replace("file://", "").startswith(ROOT)  # nothing written into the repo
    names = artifact_names(client, run.info.run_id)
    assert "metrics.json" in names
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
def eval_run(env):
    # checkpoints at 5, 10, 15 (+ final 20), FID-k at 10: reports at 10, 15 and the final one at 20
    cfg = smoke(env, "eval", routing="dtr", beta=0.8, steps=20, log_every=5, ckpt_every=5, eval_every=10,
                final_eval_samples=64, feature_set="domain")
    reports = []

    def report(metrics, path):
        reports.append({**metrics, "_path": path, "_exists": bool(path) and os.path.isdir(path),
                        "_complete": bool(path) and os.path.exists(os.path.join(path, COMPLETE))})

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


# ------------------------------------------------------------------------------ 7. the CLI

def test_cli_help_documents_every_field():
    import dataclasses

    from trainers.train_cli import build_parser
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    missing = [n for n in fields if f"--{n.replace('_', '-')}" not in proc.stdout]
    assert not missing, f"--help lacks flags for {missing}"
    helps = {a.dest: a.help for a in build_parser()._actions}
    undocumented = [n for n in fields if not helps.get(n) or helps[n] == n]
    assert not undocumented, f"flags without a description: {undocumented}"


@pytest.mark.parametrize("args, overrides", [
    (["--routing", "dtr", "--beta", "0.5", "--steps", "7", "--learn-sigma", "false", "--extra", '{"a": 1}',
      "--run-dir", "/tmp/elsewhere", "--run-name", "x"],
     dict(routing="dtr", beta=0.5, steps=7, learn_sigma=False, extra={"a": 1}, run_dir="/tmp/elsewhere",
          run_name="x")),
    (["--weighting", "ant_uw", "--uw-clusters", "4", "--lr", "3e-4", "--run-name", "y"],
     dict(weighting="ant_uw", uw_clusters=4, lr=3e-4, run_name="y", run_dir="<runs>/train/y")),
])
def test_cli_dry_run_prints_the_resolved_config(env, args, overrides):
    proc = cli("--preset", "smoke", "--dry-run", *args)
    assert proc.returncode == 0, proc.stderr
    if overrides.get("run_dir", "").startswith("<runs>"):
        overrides["run_dir"] = overrides["run_dir"].replace("<runs>", os.environ["DTR_RUNS_DIR"])
    assert RunConfig.from_dict(json.loads(proc.stdout)) == preset_config("smoke", **overrides)
