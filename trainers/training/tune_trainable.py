"""The Ray Tune trainable: one trial = one DeepSpeed training run (trainers/training/run.py).

Lives in ``trainers/`` because Ray workers must unpickle it (they cannot import
``platform.*``).  A trial with one worker trains in the Tune function itself; a
trial with several workers fits a Ray Train ``TorchTrainer`` (the Ray Train V2
pattern) whose run name is derived from the trial id, so restore finds it.
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field

from trainers.config import RunConfig


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a sweep phase shares (plain data, pickled to the workers).

    ``base`` is the resolved run config (a dict) every trial starts from and ``baselines`` the
    resolved config of each named baseline: the driver resolves them once
    (search_spaces/resolve.py); a trial only adds its searched values, its seed and its name.
    """

    phase: str                 # "baselines" or "search"
    sweep_dir: str
    parent_run_id: str | None
    mlflow_experiment: str
    base: dict
    baselines: dict = field(default_factory=dict)   # name -> resolved RunConfig dict
    labels: dict = field(default_factory=dict)      # recorded in RunConfig.extra, e.g. space, budget
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    workers: int = 1


def trial_config(ctx: TrialContext, params: dict, trial_name: str) -> RunConfig:
    """The trial's run config: the resolved base (or the named baseline) + the searched params."""
    params = dict(params)
    baseline = params.pop("baseline", None)
    start = ctx.baselines[baseline] if baseline is not None else ctx.base
    # quantised Tune domains give 0.6799999999999999 for 0.68: keep the values people typed
    searched = {k: round(v, 10) if isinstance(v, float) else v for k, v in params.items()}
    return RunConfig.from_dict(start).replace(
        **searched, run_name=trial_name, run_dir=os.path.join(ctx.sweep_dir, "trials", trial_name),
        mlflow_experiment=ctx.mlflow_experiment, progress=False,
        extra={**ctx.labels, "phase": ctx.phase, "baseline": baseline or ""})


def _clean(metrics: dict) -> dict:
    """Plain values for Tune/Optuna; a non-finite number (a diverged FID) becomes 1e9."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool):
            out[k] = v
        elif isinstance(v, (int, float)):
            out[k] = float(v) if math.isfinite(v) else 1e9
        elif isinstance(v, str):
            out[k] = v
    return out


def _trial_name(ctx: TrialContext, params: dict) -> str:
    from ray import tune
    trial_id = tune.get_context().get_trial_id()
    if "baseline" in params:
        label = params["baseline"].replace(" ", "").replace("/", "-")
        return f"baseline-{label}-s{params.get('seed', 0)}-{trial_id}"
    return f"trial-{trial_id}"


def _restored_checkpoint(run_dir: str, checkpoint, copy_name: str = "restored_checkpoint") -> str | None:
    """Where a (re)started trial resumes: the newer of Tune's last reported checkpoint and the
    run directory's own latest complete checkpoint (saved between reports; the run directory
    lives under the sweep directory, shared storage on clusters)."""
    from trainers.training.checkpoint import latest_checkpoint, saved_step
    local = latest_checkpoint(run_dir)
    restored = None
    if checkpoint is not None:
        target = os.path.join(run_dir, copy_name)
        shutil.rmtree(target, ignore_errors=True)
        restored = checkpoint.to_directory(target)
    candidates = [p for p in (local, restored) if p]
    return max(candidates, key=saved_step) if candidates else None


def run_trial(params: dict, ctx: TrialContext) -> None:
    """Tune function trainable (one training worker)."""
    from ray import tune

    from trainers.training.run import train

    if ctx.workers > 1:
        return _run_distributed_trial(params, ctx)
    cfg = trial_config(ctx, params, _trial_name(ctx, params))
    os.makedirs(cfg.run_dir, exist_ok=True)
    with open(os.path.join(cfg.run_dir, "worker.pid"), "w") as f:
        f.write(str(os.getpid()))

    def report(metrics: dict, checkpoint_dir: str | None) -> None:
        metrics = {**_clean(metrics), "run_dir": cfg.run_dir, "label": cfg.label()}
        if checkpoint_dir:
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))
        else:
            tune.report(metrics)

    resume = _restored_checkpoint(cfg.run_dir, tune.get_checkpoint())
    train(cfg, resume=resume, parent_run_id=ctx.parent_run_id, report=report,
          threads=max(1, int(ctx.cpus_per_worker)))


def _worker_loop(config: dict) -> None:
    """Ray Train worker: the same ``train`` function, reporting through ``ray.train``."""
    import ray.train

    from trainers.training.run import train
    cfg = RunConfig.from_dict(config["run_config"])
    rank = ray.train.get_context().get_world_rank()

    def report(metrics: dict, checkpoint_dir: str | None) -> None:
        metrics = {**_clean(metrics), "run_dir": cfg.run_dir, "label": cfg.label()}
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir and rank == 0 else None
        ray.train.report(metrics, checkpoint=checkpoint)

    checkpoint = ray.train.get_checkpoint()
    resume = _restored_checkpoint(cfg.run_dir, checkpoint, copy_name=f"restored_checkpoint_rank{rank}")
    train(cfg, resume=resume, parent_run_id=config["parent_run_id"], report=report,
          threads=config["threads"])


def _run_distributed_trial(params: dict, ctx: TrialContext) -> None:
    """Ray Train V2 inside a Tune function: fit a TorchTrainer with a stable run name."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    name = _trial_name(ctx, params)
    cfg = trial_config(ctx, params, name)
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"run_config": cfg.to_dict(), "parent_run_id": ctx.parent_run_id,
                           "threads": max(1, int(ctx.cpus_per_worker))},
        scaling_config=ray.train.ScalingConfig(
            num_workers=ctx.workers, use_gpu=ctx.gpus_per_worker > 0,
            resources_per_worker={"CPU": ctx.cpus_per_worker, "GPU": ctx.gpus_per_worker}
            if ctx.gpus_per_worker > 0 else {"CPU": ctx.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=name, storage_path=os.path.join(ctx.sweep_dir, "train_runs"),
            # one retry layer: Tune's (the sweep's FailureConfig) restarts the trial, which resumes from
            # its newest checkpoint; a second Ray Train layer inside would multiply the retries
            failure_config=ray.train.FailureConfig(max_failures=0),
            callbacks=[TuneReportCallback()]),
    )
    trainer.fit()
