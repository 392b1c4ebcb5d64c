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

from platform.sweep_lock import sweep_lock
from platform.sweep_paths import default_sweep_dir
from reports.records_files import SETTINGS_FILE
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


# SETTINGS_FILE (sweep.json): what the sweep was started with; the report reads its objectives.
# Settings a resumed sweep cannot change (the Optuna study keeps its sampler, objectives and
# parameters) -> how the command line sets each.  --trials (raised) and --max-concurrent do apply
# on resume: platform/resumable_search.py.
FIXED_SETTINGS = {"seed": "--seed", "objectives": "--objectives", "overrides": "--set",
                  "search_params": "the search space's parameters"}
RESUMABLE = "resumable_search"  # sweep.json key of sweeps whose search phase takes more trials on resume


KNOWN_MODES = {"fid": "min", "fid_k": "min", "loss": "min", "precision": "max", "recall": "max", "is_mean": "max",
               "label_accuracy": "max", "images_per_s": "max"}


def _objective_modes(space: SearchSpace, objectives: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Metric names and directions of ``--objectives`` (``name`` of a known metric, or ``name:min`` /
    ``name:max`` for any other metric the trials report); default: the space's metric."""
    metrics, modes = [], []
    for item in objectives or (space.metric,):
        name, _, mode = item.partition(":")
        mode = mode or (space.mode if name == space.metric else KNOWN_MODES.get(name, ""))
        if mode not in ("min", "max"):
            raise ValueError(f"objective {item!r}: unknown metric; choose from {sorted(KNOWN_MODES)} or give "
                             "its direction as NAME:min / NAME:max")
        metrics.append(name)
        modes.append(mode)
    return metrics, modes


def sweep_settings(opts: SweepOptions) -> dict:
    """The sweep's resolved settings (saved as ``<sweep_dir>/sweep.json``): space, budget, trial count,
    concurrency, sampler seed, objectives with their directions, ``--set`` overrides."""
    space, budget = get_space(opts.space), get_budget(opts.budget)
    metrics, modes = _objective_modes(space, opts.objectives)
    settings = {"space": space.name, "budget": budget.name,
                "trials": opts.trials or budget.num_trials or space.num_trials,
                "max_concurrent": opts.max_concurrent or budget.max_concurrent, "seed": opts.seed,
                "objectives": metrics, "modes": modes, "overrides": dict(opts.overrides),
                "search_params": {k: v.describe() for k, v in space.params.items()}, RESUMABLE: True}
    return json.loads(json.dumps(settings))


def _flag_text(key: str, value) -> str:
    if key == "objectives":
        return f"--objectives {','.join(value)}"
    if key == "overrides":
        return " ".join(f"--set {k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in sorted(value.items())) \
            or "no --set"
    if key == "search_params":
        return "searched parameters " + "; ".join(f"{k} {v}" for k, v in sorted(value.items()))
    return f"{FIXED_SETTINGS.get(key, '--' + key.replace('_', '-'))} {value}"


def read_saved_settings(sweep_dir: str) -> dict | None:
    path = os.path.join(sweep_dir, SETTINGS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def check_resume(sweep_dir: str, settings: dict) -> None:
    """Raise ValueError (one line) when ``sweep_dir`` holds a sweep started with settings a resume
    cannot apply: another ``--seed``, ``--objectives``, ``--set`` or searched parameters, fewer
    ``--trials`` than it has, or (a sweep from before resumes took them) another ``--trials`` /
    ``--max-concurrent``.  A sweep without ``sweep.json`` (older, or never started) is not checked."""
    saved = read_saved_settings(sweep_dir)
    if saved is None:
        return
    fixed = list(FIXED_SETTINGS) + ([] if saved.get(RESUMABLE) else ["trials", "max_concurrent"])
    changed = [k for k in fixed if k in saved and saved[k] != settings[k]]
    if changed:
        was = ", ".join(_flag_text(k, saved[k]) for k in changed)
        now = ", ".join(_flag_text(k, settings[k]) for k in changed)
        raise ValueError(f"{sweep_dir} holds a sweep started with {was}; this command asks for {now}, which "
                         "resuming it cannot apply: rerun with the old values to resume, or start a new sweep "
                         "with --name NAME (or --fresh to move this one aside)")
    if settings["trials"] < saved.get("trials", 0):
        raise ValueError(f"{sweep_dir} holds a sweep of --trials {saved['trials']}; --trials {settings['trials']} "
                         f"cannot take trials back: rerun with --trials {saved['trials']} or more to resume it")


def resume_settings(sweep_dir: str, opts: SweepOptions) -> dict:
    """The settings a run of ``opts`` in ``sweep_dir`` goes on with: ``sweep_settings(opts)``, where a
    resumed sweep keeps its saved ``--trials`` / ``--max-concurrent`` unless the command gives them
    (then they apply: more trials run, the new concurrency holds); ``check_resume`` refuses the rest."""
    settings = sweep_settings(opts)
    saved = read_saved_settings(sweep_dir) or {}
    for key, given in (("trials", opts.trials), ("max_concurrent", opts.max_concurrent)):
        if given is None and key in saved:
            settings[key] = saved[key]
    check_resume(sweep_dir, settings)
    return settings


def write_settings(sweep_dir: str, settings: dict) -> None:
    with open(os.path.join(sweep_dir, SETTINGS_FILE), "w") as f:
        json.dump(settings, f, indent=1, sort_keys=True)


def dry_run_text(opts: SweepOptions) -> str:
    """What ``run_sweep(opts)`` would run and an estimate of its time (search_spaces/estimate.py);
    starts nothing, writes nothing."""
    from search_spaces.estimate import duration, measured_step_s, sweep_estimate, trial_seconds
    from trainers.paths import bench_history_path
    space, budget = get_space(opts.space), get_budget(opts.budget)
    sweep_dir = os.path.abspath(opts.sweep_dir or default_sweep_dir(space.name, budget.name))
    settings = sweep_settings(opts)
    base = base_config(space, budget, dict(opts.overrides))
    baselines = baseline_configs(space, budget, dict(opts.overrides))
    seeds = list(budget.baseline_seeds)
    multi = len(settings["objectives"]) > 1
    step_s = measured_step_s(bench_history_path(), budget.preset)
    per_trial = trial_seconds(base, budget, step_s)
    est = sweep_estimate(len(baselines) * len(seeds), settings["trials"], settings["max_concurrent"], per_trial,
                         budget.gpus_per_trial * budget.workers_per_trial)
    state = "resumes the sweep there" if os.path.exists(os.path.join(sweep_dir, SETTINGS_FILE)) else "new sweep"
    try:
        settings = resume_settings(sweep_dir, opts)
    except ValueError as err:
        state = f"would be refused: {err}"
    asha = settings["objectives"] == ["fid"] and base.eval_every and base.eval_every < base.steps
    lines = [f"sweep {space.name} at budget {budget.name} -> {sweep_dir} ({state})",
             f"baselines: {', '.join(sorted(baselines)) or 'none'} x seeds {seeds} = "
             f"{len(baselines) * len(seeds)} trials",
             f"search: {settings['trials']} Optuna trials ({'NSGA-II' if multi else 'TPE'}, sampler seed "
             f"{settings['seed']}) over " + ", ".join(f"{k} {v.describe()}" for k, v in space.params.items()),
             "objectives: " + ", ".join(f"{m} ({d})" for m, d in zip(settings["objectives"], settings["modes"]))
             + (f"; ASHA stops trials early on FID-k (every {base.eval_every} steps)" if asha else ""),
             f"concurrency: {settings['max_concurrent']} trials at once; a trial = {budget.workers_per_trial} "
             f"worker(s) x {budget.cpus_per_trial:g} CPU, {budget.gpus_per_trial:g} GPU",
             f"every trial: {base.model} on {base.dataset}, {base.steps} steps x batch {base.global_batch}, "
             f"FID-k of {base.eval_k} samples every {base.eval_every or '-'} steps, final evaluation "
             f"{base.final_eval_samples} samples ({base.feature_set} features)"]
    for name, cfg in sorted(baselines.items()):
        changed = {k: v for k, v in cfg.to_dict().items() if v != base.to_dict().get(k)}
        lines.append(f"  baseline {name}: base config with {changed or 'no change'}")
    source = f"measured {step_s:.3f} s/step (bench history)" if step_s else f"{budget.est_step_s:.3g} s/step (budget)"
    lines += [f"estimate: ~{duration(per_trial)} per trial ({source}); ~{duration(est['wall_s'])} wall for the sweep "
              f"(an upper bound when ASHA stops trials); {est['trial_hours']:.1f} trial-hours, "
              f"{est['gpu_hours']:.1f} GPU-hours",
              "dry run: nothing started"]
    return "\n".join(lines)


def _use_cluster_token() -> None:
    """``ray start --head`` (2.60) turns on token auth when a token exists ($RAY_AUTH_TOKEN, or the
    file ~/.ray/auth_token, which a local ``ray.init()`` writes); a driver given the cluster's address
    explicitly must then use token mode too (Ray turns it on by itself only for ``address="auto"``)."""
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH", os.path.expanduser("~/.ray/auth_token"))
    if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or os.path.exists(token_file)):
        os.environ["RAY_AUTH_MODE"] = "token"


def _parent_run(sweep_dir: str, space: SearchSpace, budget: Budget, experiment: str, settings: dict) -> str:
    """One MLflow parent run per sweep; its id is kept in the sweep dir so a resume reuses it."""
    import mlflow
    id_file = os.path.join(sweep_dir, "mlflow_parent_run_id")
    mlflow.set_tracking_uri(mlflow_tracking_uri())
    client = mlflow.MlflowClient()
    if os.path.exists(id_file):
        run_id = open(id_file).read().strip()
        client.update_run(run_id, status="RUNNING")  # a resumed sweep runs again (summarise ends it)
        return run_id
    run = client.create_run(ensure_experiment(experiment), run_name=f"sweep-{space.name}-{budget.name}",
                            tags={"sweep": "true", "space": space.name, "budget": budget.name})
    client.log_batch(run.info.run_id, params=[
        mlflow.entities.Param("space", space.name), mlflow.entities.Param("budget", budget.name),
        mlflow.entities.Param("metric", space.metric), mlflow.entities.Param("mode", space.mode),
        mlflow.entities.Param("search_params", json.dumps({k: repr(v) for k, v in space.params.items()})),
        mlflow.entities.Param("baselines", json.dumps(space.baselines)),
        mlflow.entities.Param("objectives", ",".join(settings["objectives"])),
        mlflow.entities.Param("modes", ",".join(settings["modes"]))])
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


def _run_phase(name: str, path: str, trainable, param_space: dict, tune_config, budget: Budget, parent: str):
    """Run (or restore and go on with) one phase's Tune experiment; its progress line and parent-run
    metrics come from platform/sweep_progress.py."""
    from ray import tune

    from platform.sweep_progress import ProgressLine
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
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=1,
                callbacks=[ProgressLine(name, parent)]))
    return tuner.fit()


def _search_tune_config(space: SearchSpace, budget: Budget, opts: SweepOptions, settings: dict, sweep_dir: str,
                        steps: int, eval_every: int, base_seed: int = 0):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter

    from platform.repeat_as_seed import RepeatAsSeedOptunaSearch
    from platform.resumable_search import ResumableSearch
    from reports.optuna_views import JOURNAL

    metrics, modes = _objective_modes(space, opts.objectives)
    multi = len(metrics) > 1
    sampler = (optuna.samplers.NSGAIISampler(seed=opts.seed) if multi
               else optuna.samplers.TPESampler(seed=opts.seed, constant_liar=True))
    storage = JournalStorage(JournalFileBackend(os.path.join(sweep_dir, JOURNAL)))
    searcher = RepeatAsSeedOptunaSearch(metric=metrics if multi else metrics[0], mode=modes if multi else modes[0],
                                        sampler=sampler, storage=storage, study_name=f"{space.name}-{budget.name}",
                                        seed=None, base_seed=base_seed)
    limited = ConcurrencyLimiter(searcher, max_concurrent=settings["max_concurrent"])
    scheduler = None
    # ASHA ranks trials by the FID-k proxy every report carries (``fid`` is only in final reports:
    # trainers/training/tune_trainable.py), so it runs only when the one objective is FID
    if metrics == ["fid"] and eval_every and eval_every < steps:
        scheduler = ASHAScheduler(time_attr="step", metric="fid_k", mode=modes[0], max_t=steps,
                                  grace_period=eval_every, reduction_factor=2)
    # the ConcurrencyLimiter holds the concurrency (TuneConfig's max_concurrent_trials would be a
    # second copy a restore could not change); ResumableSearch applies sweep.json on restore
    ResumableSearch.settings = os.path.join(sweep_dir, SETTINGS_FILE)
    return tune.TuneConfig(search_alg=ResumableSearch(limited, os.path.join(sweep_dir, SETTINGS_FILE)),
                           scheduler=scheduler, num_samples=settings["trials"])


def run_sweep(opts: SweepOptions) -> dict:
    """Run (or resume) a sweep; returns {"sweep_dir", "table", "best"}."""
    space, budget = get_space(opts.space), get_budget(opts.budget)
    space.validate()
    sweep_dir = os.path.abspath(opts.sweep_dir or default_sweep_dir(space.name, budget.name))
    settings = resume_settings(sweep_dir, opts)  # refuses what a resume cannot apply, before anything starts
    with sweep_lock(sweep_dir):  # one driver per sweep directory (a second one refuses here)
        return _run_locked(opts, space, budget, sweep_dir, settings)


def _run_locked(opts: SweepOptions, space: SearchSpace, budget: Budget, sweep_dir: str, settings: dict) -> dict:
    if opts.address:
        _use_cluster_token()  # before Ray is imported: it reads the auth mode once
    import ray
    from ray import tune

    os.makedirs(sweep_dir, exist_ok=True)
    write_settings(sweep_dir, settings)
    experiment = f"sweep-{space.name}-{budget.name}"
    parent = _parent_run(sweep_dir, space, budget, experiment, settings)
    env = {k: v for k, v in {"MLFLOW_TRACKING_URI": mlflow_tracking_uri(), "DTR_RUNS_DIR": runs_dir(),
                             "DTR_CACHE_DIR": os.environ.get("DTR_CACHE_DIR"), "DS_ACCELERATOR":
                             os.environ.get("DS_ACCELERATOR"), "PYTHONUNBUFFERED": "1"}.items() if v}
    if not ray.is_initialized():
        # "local": a new Ray on this machine, never a cluster some other process left running here
        ray.init(address=opts.address or "local", num_cpus=None if opts.address else opts.num_cpus,
                 runtime_env={"env_vars": env}, include_dashboard=False, log_to_driver=True)
    base = base_config(space, budget, dict(opts.overrides))
    started = time.time()
    ctx = dict(sweep_dir=sweep_dir, parent_run_id=parent, mlflow_experiment=experiment, base=base.to_dict(),
               baselines={k: c.to_dict() for k, c in baseline_configs(space, budget, dict(opts.overrides)).items()},
               labels={"space": space.name, "budget": budget.name}, cpus_per_worker=budget.cpus_per_trial,
               gpus_per_worker=budget.gpus_per_trial, workers=budget.workers_per_trial,
               worker_resources=dict(budget.worker_resources))
    grids = {}
    if space.baselines and budget.baseline_seeds:
        phase_ctx = TrialContext(phase="baselines", **ctx)
        grids["baselines"] = _run_phase(
            "baselines", os.path.join(sweep_dir, "baselines"), _trainable(phase_ctx, budget),
            {"baseline": tune.grid_search(sorted(space.baselines)),
             "seed": tune.grid_search(list(budget.baseline_seeds))},
            tune.TuneConfig(max_concurrent_trials=settings["max_concurrent"]), budget, parent)
    phase_ctx = TrialContext(phase="search", **ctx)
    grids["search"] = _run_phase(
        "search", os.path.join(sweep_dir, "search"), _trainable(phase_ctx, budget), space.tune_param_space(),
        _search_tune_config(space, budget, opts, settings, sweep_dir, base.steps, base.eval_every, base.seed),
        budget, parent)
    from platform.sweep_summary import summarise
    return summarise(space, budget, sweep_dir, grids, parent, wall_seconds=time.time() - started)
