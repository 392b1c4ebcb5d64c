"""One place where a space, a budget and ``--set`` overrides become run configs.

    base = base_config(space, budget, overrides)          # what every trial of the sweep starts from
    cfgs = baseline_configs(space, budget, overrides)     # {"vanilla": RunConfig, ...}

The driver resolves these once and hands the resolved dicts to the Tune trainable
(trainers/training/tune_trainable.py), which only adds the trial's searched values and its
name; nothing downstream rebuilds a config from space or budget names.
"""
from __future__ import annotations

from search_spaces.base import SearchSpace
from search_spaces.budgets import Budget
from trainers.config import RunConfig
from trainers.presets import preset_config


def base_config(space: SearchSpace, budget: Budget, overrides: dict | None = None) -> RunConfig:
    """Budget preset <- budget overrides <- space base <- ``--set`` overrides (later wins)."""
    return preset_config(budget.preset, **{**budget.overrides, **space.base, **dict(overrides or {})})


def baseline_configs(space: SearchSpace, budget: Budget, overrides: dict | None = None) -> dict[str, RunConfig]:
    """Every baseline the space names, resolved on top of :func:`base_config` (raises on invalid values)."""
    base = base_config(space, budget, overrides)
    return {name: base.replace(**changes) for name, changes in space.baselines.items()}


def check_overrides(space: SearchSpace, budget: Budget, overrides: dict) -> None:
    """Raise ValueError if the base config or any baseline is not a valid config."""
    baseline_configs(space, budget, overrides)
