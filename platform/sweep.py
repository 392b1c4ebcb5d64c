"""The sweep driver: Ray Tune + Optuna over a named space, MLflow parent run, resume, summary.

A sweep has two phases, each its own Tune experiment under the sweep directory:
``baselines`` (the fixed configs the space names: vanilla, R-TR, ... x seeds) and
``search`` (Optuna TPE over the space's parameters, ASHA stopping bad trials early
on the FID-k proxy).  Running the same command again restores both phases:
finished trials are kept, unfinished ones continue from their last checkpoint,
and the Optuna study (a journal file) keeps its history.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from search_spaces import SearchSpace, get_space
from search_spaces.budgets import Budget, get_budget
from search_spaces.resolve import base_config, baseline_configs
from trainers.paths import mlflow_tracking_uri, runs_dir
from trainers.training.tracking import ensure_experiment
from trainers.training.tune_trainable import TrialContext, run_trial


@dataclass(frozen=True)
class SweepOptions:
    space: str
    budget: str = "laptop"
    trials: int | None = None
    max_concurrent: int | None = None
    address: str | None = None
    sweep_dir: str | None = None
    seed: int = 0
    objectives: tuple[str, ...] = ()   # e.g. ("fid", "images_per_s"): multi-objective, FIFO
    num_cpus: int | None = None
    overrides: tuple = ()              # ((field, value), ...) applied to every trial


def default_sweep_dir(space: str, budget: str) -> str:
    return os.path.join(runs_dir(), "sweeps", f"{space}-{budget}")


def _objective_modes(space: SearchSpace, objectives: tuple[str, ...]) -> tuple[list[str], list[str]]:
    known = {"fid": "min", "loss": "min", "precision": "max", "recall": "max", "is_mean": "max",
             "images_per_s": "max"}
    metrics = list(objectives) or [space.metric]
    unknown = [m for m in metrics if m not in known and m != space.metric]
    if unknown:
        raise ValueError(f"unknown objective(s) {unknown}; choose from {sorted(known)}")
    modes = [space.mode if m == space.metric else known[m] for m in metrics]
    return metrics, modes


def _use_cluster_token() -> None:
    """``ray start`` (2.60) turns on token auth and writes ~/.ray/auth_token; a driver joining
    that cluster must then use token mode too (Ray's own default for drivers is 'disabled')."""
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH", os.path.expanduser("~/.ray/auth_token"))
    if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or os.path.exists(token_file)):
        os.environ["RAY_AUTH_MODE"] = "token"


def _parent_run(sweep_dir: str, space: SearchSpace, budget: Budget, experiment: str) -> str:
    """One MLflow parent run per sweep; its id is kept in the sweep dir so a resume reuses it."""
    import mlflow
    id_file = os.path.join(sweep_dir, "mlflow_parent_run_id")
    mlflow.set_tracking_uri(mlflow_tracking_uri())
    client = mlflow.MlflowClient()
    if os.path.exists(id_file):
        return open(id_file).read().strip()
    run = client.create_run(ensure_experiment(experiment), run_name=f"sweep-{space.name}-{budget.name}",
                            tags={"sweep": "true", "space": space.name, "budget": budget.name})
    client.log_batch(run.info.run_id, params=[
        mlflow.entities.Param("space", space.name), mlflow.entities.Param("budget", budget.name),
        mlflow.entities.Param("metric", space.metric), mlflow.entities.Param("mode", space.mode),
        mlflow.entities.Param("search_params", json.dumps({k: repr(v) for k, v in space.params.items()})),
        mlflow.entities.Param("baselines", json.dumps(space.baselines))])
    with open(id_file, "w") as f:
        f.write(run.info.run_id)
    return run.info.run_id


def _trainable(ctx: TrialContext, budget: Budget):
    from ray import tune
    fn = tune.with_parameters(run_trial, ctx=ctx)
    if budget.workers_per_trial > 1:
        # the trial function only drives a TorchTrainer: a sliver of a CPU so it never
        # starves the training workers it waits for (a trial driver holding 1 of 2 CPUs while its
        # 2-worker TorchTrainer waits for both deadlocks)
        return tune.with_resources(fn, {"cpu": 0.01})
    return tune.with_resources(fn, {"cpu": budget.cpus_per_trial, "gpu": budget.gpus_per_trial})


def _run_phase(name: str, path: str, trainable, param_space: dict, tune_config, budget: Budget):
    from ray import tune
    if tune.Tuner.can_restore(path):
        print(f"[sweep] resuming phase '{name}' from {path}", flush=True)
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True,
                                   param_space=param_space)
    else:
        tuner = tune.Tuner(
            trainable, param_space=param_space, tune_config=tune_config,
            run_config=tune.RunConfig(
                name=name, storage_path=os.path.dirname(path),
                failure_config=tune.FailureConfig(max_failures=budget.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=1))
    return tuner.fit()


def _search_tune_config(space: SearchSpace, budget: Budget, opts: SweepOptions, sweep_dir: str, steps: int,
                        eval_every: int, base_seed: int = 0):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter

    from platform.repeat_as_seed import RepeatAsSeedOptunaSearch

    metrics, modes = _objective_modes(space, opts.objectives)
    multi = len(metrics) > 1
    sampler = (optuna.samplers.NSGAIISampler(seed=opts.seed) if multi
               else optuna.samplers.TPESampler(seed=opts.seed, constant_liar=True))
    storage = JournalStorage(JournalFileBackend(os.path.join(sweep_dir, "optuna_journal.log")))
    searcher = RepeatAsSeedOptunaSearch(metric=metrics if multi else metrics[0], mode=modes if multi else modes[0],
                                        sampler=sampler, storage=storage, study_name=f"{space.name}-{budget.name}",
                                        seed=None, base_seed=base_seed)
    limited = ConcurrencyLimiter(searcher, max_concurrent=opts.max_concurrent or budget.max_concurrent)
    scheduler = None
    if not multi and eval_every and eval_every < steps:
        scheduler = ASHAScheduler(time_attr="step", metric=metrics[0], mode=modes[0], max_t=steps,
                                  grace_period=eval_every, reduction_factor=2)
    return tune.TuneConfig(search_alg=limited, scheduler=scheduler,
                           num_samples=opts.trials or budget.num_trials or space.num_trials,
                           max_concurrent_trials=opts.max_concurrent or budget.max_concurrent)


def run_sweep(opts: SweepOptions) -> dict:
    """Run (or resume) a sweep; returns {"sweep_dir", "table", "best"}."""
    if opts.address:
        _use_cluster_token()  # before Ray is imported: it reads the auth mode once
    import ray
    from ray import tune

    space, budget = get_space(opts.space), get_budget(opts.budget)
    space.validate()
    sweep_dir = os.path.abspath(opts.sweep_dir or default_sweep_dir(space.name, budget.name))
    os.makedirs(sweep_dir, exist_ok=True)
    experiment = f"sweep-{space.name}-{budget.name}"
    parent = _parent_run(sweep_dir, space, budget, experiment)
    env = {k: v for k, v in {"MLFLOW_TRACKING_URI": mlflow_tracking_uri(), "DTR_RUNS_DIR": runs_dir(),
                             "DTR_CACHE_DIR": os.environ.get("DTR_CACHE_DIR"), "DS_ACCELERATOR":
                             os.environ.get("DS_ACCELERATOR"), "PYTHONUNBUFFERED": "1"}.items() if v}
    if not ray.is_initialized():
        ray.init(address=opts.address, num_cpus=None if opts.address else opts.num_cpus,
                 runtime_env={"env_vars": env}, include_dashboard=False, log_to_driver=True)
    base = base_config(space, budget, dict(opts.overrides))
    started = time.time()
    ctx = dict(sweep_dir=sweep_dir, parent_run_id=parent, mlflow_experiment=experiment, base=base.to_dict(),
               baselines={k: c.to_dict() for k, c in baseline_configs(space, budget, dict(opts.overrides)).items()},
               labels={"space": space.name, "budget": budget.name}, cpus_per_worker=budget.cpus_per_trial,
               gpus_per_worker=budget.gpus_per_trial, workers=budget.workers_per_trial)
    grids = {}
    if space.baselines:
        phase_ctx = TrialContext(phase="baselines", **ctx)
        grids["baselines"] = _run_phase(
            "baselines", os.path.join(sweep_dir, "baselines"), _trainable(phase_ctx, budget),
            {"baseline": tune.grid_search(sorted(space.baselines)),
             "seed": tune.grid_search(list(budget.baseline_seeds))},
            tune.TuneConfig(max_concurrent_trials=opts.max_concurrent or budget.max_concurrent), budget)
    phase_ctx = TrialContext(phase="search", **ctx)
    grids["search"] = _run_phase(
        "search", os.path.join(sweep_dir, "search"), _trainable(phase_ctx, budget), space.tune_param_space(),
        _search_tune_config(space, budget, opts, sweep_dir, base.steps, base.eval_every, base.seed), budget)
    from platform.sweep_summary import summarise
    return summarise(space, budget, sweep_dir, grids, parent, wall_seconds=time.time() - started)
