"""What a sweep would run and roughly how long it takes (``python -m platform.search ... --dry-run``).

A trial's time is start-up + steps x seconds per step + every evaluation sample (FID-k at each
``eval_every`` and the final evaluation) x seconds per sample, from the budget's ``est_*`` fields
(search_spaces/budgets.py says where they come from); for the ``laptop`` preset the seconds per step
are the newest measured ``step_ms_laptop`` of the benchmark history when there is one.  The sweep's
wall time runs the baselines and then the search trials in waves of ``max_concurrent``; ASHA may
stop search trials early, so it is an upper bound.  GPU-hours = trial hours x GPUs per trial.
"""
from __future__ import annotations

import json
import math
import os


def measured_step_s(history_path: str | None, preset: str) -> float | None:
    """The newest ``step_ms_laptop`` mean (seconds) of the benchmark history, for the laptop preset."""
    if preset != "laptop" or not history_path or not os.path.exists(history_path):
        return None
    found = None
    with open(history_path, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
                found = float(entry["metrics"]["step_ms_laptop"]["mean"]) / 1000.0
            except (ValueError, KeyError, TypeError):
                continue
    return found


def trial_seconds(cfg, budget, step_s: float | None = None) -> float:
    """Estimated seconds of one trial of run config ``cfg`` (a RunConfig or its dict)."""
    get = cfg.get if isinstance(cfg, dict) else lambda k: getattr(cfg, k)
    steps, every = int(get("steps")), int(get("eval_every") or 0)
    evals = (steps - 1) // every if every else 0
    samples = evals * int(get("eval_k")) + int(get("final_eval_samples"))
    members = max(1, int(get("multi_expert_n") or 1))
    return members * (budget.est_start_s + steps * (step_s or budget.est_step_s) + samples * budget.est_sample_s)


def sweep_estimate(n_baseline: int, n_search: int, concurrency: int, seconds: float, gpus_per_trial: float) -> dict:
    """{"wall_s", "trial_hours", "gpu_hours"} of ``n_baseline`` + ``n_search`` trials of ``seconds`` each."""
    waves = math.ceil(n_baseline / concurrency) + math.ceil(n_search / concurrency)
    trial_hours = (n_baseline + n_search) * seconds / 3600
    return {"wall_s": waves * seconds, "trial_hours": trial_hours, "gpu_hours": trial_hours * gpus_per_trial}


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
