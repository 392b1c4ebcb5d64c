"""The Ray Tune trainable: one trial = one DeepSpeed training run (trainers/training/run.py).

Lives in ``trainers/`` because Ray workers must unpickle it (they cannot import
``platform.*``).  A trial with one worker trains in the Tune function itself; a
trial with several workers fits a Ray Train ``TorchTrainer`` (the Ray Train V2
pattern) whose run name is derived from the trial id, so restore finds it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from trainers.config import RunConfig
from trainers.training.preemption import end_if_terminated, handing_over, install_in_ray_worker
from trainers.training.tune_checkpoint import pointer_dir, restored_checkpoint

# a Ray actor imports this module in its main thread while unpickling its trainable: the one place
# where a SIGTERM relay can be installed in a Tune / Ray Train worker (trainers/training/preemption.py)
install_in_ray_worker()


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
    worker_resources: dict = field(default_factory=dict)  # custom Ray resources per worker, e.g. {"gpu_sim": 1}
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


# metrics only a final evaluation gives: a report before the end carries them as None ("no final
# value yet"), so that Tune's strict metric check passes and a searcher never mistakes FID-k for FID
FINAL_ONLY = ("fid", "is_mean", "precision", "recall", "label_accuracy")


class Diverged(Exception):
    """A FID (FID-k or final) that is not finite: the trial ends as a failed trial (not retried:
    resume is exact, a retry would diverge again)."""


def _clean(metrics: dict) -> dict:
    """Plain values for Tune/Optuna (non-finite numbers are left out: see ``tune_metrics``)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or isinstance(v, str):
            out[k] = v
        elif isinstance(v, (int, float)) and math.isfinite(v):
            out[k] = float(v)
    return out


def tune_metrics(metrics: dict, last_fid_k: float | None = None) -> dict:
    """What a trial reports to Tune from the training loop's ``report`` (trainers/training/loop.py).

    The loop reports ``{"step", "loss", "fid", "fid_k", "images_per_s", "final": False}`` at
    FID-k / checkpoint steps (its ``fid`` is the FID-k) and the final evaluation's metrics with
    ``"final": True``.  Here ``fid_k`` is the small-sample proxy ASHA ranks by (the final report
    repeats the last one) and ``fid`` (and every FINAL_ONLY metric) only ever a final evaluation's
    value, None before: a trial ASHA stops ends without a final ``fid`` and the searcher tells
    Optuna PRUNED (platform/repeat_as_seed.py).  Raises ``Diverged`` for a non-finite FID."""
    final = bool(metrics.get("final"))
    key = "fid" if final else "fid_k"
    value = metrics.get(key)
    if isinstance(value, float) and not math.isfinite(value):
        raise Diverged(f"{'final FID' if final else 'FID-k'} is {value} at step {metrics.get('step')}")
    out = _clean(metrics)
    if final:
        if last_fid_k is not None and "fid_k" not in out:
            out["fid_k"] = last_fid_k
    else:
        out.update({m: None for m in FINAL_ONLY})
    out.setdefault("images_per_s", None)
    return out


def diverged_result(err: Diverged, step: int | None) -> dict:
    """The last report of a diverged trial: no ``step`` (ASHA ignores it), ``diverged`` (the
    searcher tells Optuna FAIL, reports/tune_state.py shows the trial as an error)."""
    return {"diverged": True, "detail": f"diverged: {err}", "diverged_step": step, "final": False,
            "fid_k": None, **{m: None for m in FINAL_ONLY}, "images_per_s": None}


def _last_fid_k(run_dir: str) -> float | None:
    """The last finite FID-k in the run directory's metrics.jsonl (None for a new run)."""
    from trainers.training.tracking import read_metrics
    values = [r["fid_k"] for r in read_metrics(run_dir) if isinstance(r.get("fid_k"), (int, float))]
    values = [float(v) for v in values if math.isfinite(v)]
    return values[-1] if values else None


class _Reporter:
    """The ``report`` callback a trial hands to ``train``: ``tune_metrics`` + run dir and label,
    ``send(metrics, checkpoint_dir)`` the Tune/Train report call."""

    def __init__(self, cfg: RunConfig, send):
        # a retried trial starts from its FID-k so far: resumed past its last FID-k step, it reports
        # none before its final report, which must still carry one (ASHA's metric)
        self.cfg, self.send, self.last_fid_k, self.step = cfg, send, _last_fid_k(cfg.run_dir), None

    def __call__(self, metrics: dict, checkpoint_dir: str | None) -> None:
        self.step = metrics.get("step", self.step)
        out = tune_metrics(metrics, self.last_fid_k)
        if out.get("fid_k") is not None:
            self.last_fid_k = out["fid_k"]
        with handing_over():  # a SIGTERM now ends the process at once (Tune may be stopping the trial)
            self.send({**out, "run_dir": self.cfg.run_dir, "label": self.cfg.label()}, checkpoint_dir)

    def diverged(self, err: Diverged) -> None:
        self.send({**diverged_result(err, self.step), "run_dir": self.cfg.run_dir, "label": self.cfg.label()},
                  None)


def _trial_name(ctx: TrialContext, params: dict) -> str:
    from ray import tune
    trial_id = tune.get_context().get_trial_id()
    if "baseline" in params:
        label = params["baseline"].replace(" ", "").replace("/", "-")
        return f"baseline-{label}-s{params.get('seed', 0)}-{trial_id}"
    return f"trial-{trial_id}"


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

    def send(metrics: dict, checkpoint_dir: str | None) -> None:
        if checkpoint_dir:
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(pointer_dir(checkpoint_dir)))
        else:
            tune.report(metrics)

    report = _Reporter(cfg, send)
    resume = restored_checkpoint(cfg.run_dir, tune.get_checkpoint())
    try:
        train(cfg, resume=resume, parent_run_id=ctx.parent_run_id, report=report,
              threads=max(1, int(ctx.cpus_per_worker)))
    except Diverged as err:  # a normal end for Tune (no retry); the report says it failed
        report.diverged(err)
    finally:
        end_if_terminated()  # a SIGTERM held back for a checkpoint now ends the process


def _worker_loop(config: dict) -> None:
    """Ray Train worker: the same ``train`` function, reporting through ``ray.train``."""
    import ray.train

    from trainers.training.run import train
    cfg = RunConfig.from_dict(config["run_config"])
    rank = ray.train.get_context().get_world_rank()

    def send(metrics: dict, checkpoint_dir: str | None) -> None:
        checkpoint = (ray.train.Checkpoint.from_directory(pointer_dir(checkpoint_dir)) if checkpoint_dir and rank == 0
                      else None)
        ray.train.report(metrics, checkpoint=checkpoint)

    report = _Reporter(cfg, send)
    checkpoint = ray.train.get_checkpoint()
    resume = restored_checkpoint(cfg.run_dir, checkpoint, copy_name=f"restored_checkpoint_rank{rank}")
    try:
        train(cfg, resume=resume, parent_run_id=config["parent_run_id"], report=report,
              threads=config["threads"])
    except Diverged as err:  # every rank sees the same (broadcast) FID and stops here together
        report.diverged(err)
    finally:
        end_if_terminated()  # a SIGTERM held back for a checkpoint now ends the process


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
            resources_per_worker={"CPU": ctx.cpus_per_worker, **({"GPU": ctx.gpus_per_worker}
                                                                 if ctx.gpus_per_worker > 0 else {}),
                                  **ctx.worker_resources}),
        run_config=ray.train.RunConfig(
            name=name, storage_path=os.path.join(ctx.sweep_dir, "train_runs"),
            # one retry layer: Tune's (the sweep's FailureConfig) restarts the trial, which resumes from
            # its newest checkpoint; a second Ray Train layer inside would multiply the retries
            failure_config=ray.train.FailureConfig(max_failures=0),
            callbacks=[TuneReportCallback()]),
    )
    trainer.fit()
