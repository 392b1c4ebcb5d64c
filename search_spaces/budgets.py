"""Budgets: how big every trial of a sweep is, separate from what the sweep searches.

The same space runs at test scale, laptop scale or paper scale; a budget picks
the trainer preset, the resources of a trial and how many trials run at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Budget:
    name: str
    preset: str                       # trainers.presets name
    description: str
    cpus_per_trial: float = 1.0       # per training worker
    gpus_per_trial: float = 0.0       # per training worker
    workers_per_trial: int = 1        # >1: the trial fits a Ray Train TorchTrainer
    max_concurrent: int = 2
    num_trials: int | None = None     # None: the space's default
    baseline_seeds: tuple[int, ...] = (0,)
    max_failures: int = 2             # retries of a crashed trial, from its last checkpoint
    overrides: dict = field(default_factory=dict)


BUDGETS: dict[str, Budget] = {
    "smoke": Budget("smoke", "smoke", "seconds per trial; what the tests run",
                    max_concurrent=2, num_trials=2,
                    overrides=dict(steps=20, ckpt_every=10, eval_every=10, eval_k=64, final_eval_samples=128)),
    "smoke-ddp": Budget("smoke-ddp", "smoke", "like smoke, but every trial is a 2-worker Ray Train (DeepSpeed) run",
                        workers_per_trial=2, max_concurrent=1, num_trials=1,
                        overrides=dict(steps=20, ckpt_every=10, eval_every=10, eval_k=64, final_eval_samples=128,
                                       micro_batch=8)),
    # two seeds per baseline: the report pools the seed variance into a noise band (one seed cannot)
    "laptop": Budget("laptop", "laptop", "a 2-core CPU, Fashion-MNIST, minutes per trial", max_concurrent=2,
                     baseline_seeds=(0, 1)),
    "paper": Budget("paper", "paper", "the paper's ImageNet-256 DiT-L/2 setting on a GPU cluster",
                    cpus_per_trial=8, gpus_per_trial=1, workers_per_trial=8, max_concurrent=4,
                    baseline_seeds=(0, 1, 2)),
}


def get_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}; choose from {', '.join(sorted(BUDGETS))}")
    return BUDGETS[name]
