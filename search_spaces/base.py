"""Declarative search spaces: what a named sweep searches, over which fixed base config,
for which metric, and which baselines its report must include.

Parameters are described with three tiny plain-data types (``Float``, ``Int``,
``Choice``) so that a space can be validated and listed without importing Ray;
``SearchSpace.tune_param_space()`` turns them into Ray Tune domains, which
``OptunaSearch`` converts into an Optuna distribution.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def check(self, name: str) -> None:
        if not self.low < self.high:
            raise ValueError(f"parameter {name}: low ({self.low}) must be < high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"parameter {name}: a log range needs low > 0, got {self.low}")

    def describe(self) -> str:
        return f"in [{self.low:g}, {self.high:g}]" + (f" step {self.step:g}" if self.step else "") + \
            (" (log)" if self.log else "")

    def to_tune(self):
        from ray import tune
        if self.step is not None:
            return tune.quniform(self.low, self.high, self.step)
        return tune.loguniform(self.low, self.high) if self.log else tune.uniform(self.low, self.high)


@dataclass(frozen=True)
class Int:
    low: int
    high: int  # inclusive

    def check(self, name: str) -> None:
        if not self.low < self.high:
            raise ValueError(f"parameter {name}: low ({self.low}) must be < high ({self.high})")

    def describe(self) -> str:
        return f"in {self.low}..{self.high}"

    def to_tune(self):
        from ray import tune
        return tune.randint(self.low, self.high + 1)


@dataclass(frozen=True)
class Choice:
    options: tuple

    def check(self, name: str) -> None:
        if len(self.options) < 1:
            raise ValueError(f"parameter {name}: a choice needs at least one option")

    def describe(self) -> str:
        return "in {" + ", ".join(str(o) for o in self.options) + "}"

    def to_tune(self):
        from ray import tune
        return tune.choice(list(self.options))


Param = Union[Float, Int, Choice]


@dataclass(frozen=True)
class SearchSpace:
    """One named sweep.

    ``params`` map RunConfig field names to ranges; ``base`` fixes other fields;
    ``baselines`` are named fixed configs (field overrides on ``base``) run as
    their own trials and shown next to the search results in the report.
    """

    name: str
    description: str
    params: dict[str, Param]
    base: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric: str = "fid"
    mode: str = "min"
    num_trials: int = 8

    def validate(self) -> None:
        """Raise ValueError on bad ranges or on names the run config does not have."""
        from trainers.config import RunConfig  # here: listing spaces (``--help``) must not import torch
        if self.mode not in ("min", "max"):
            raise ValueError(f"space {self.name}: mode must be min or max, got {self.mode!r}")
        known = set(RunConfig.__dataclass_fields__)
        for key in list(self.params) + list(self.base):
            if key not in known:
                raise ValueError(f"space {self.name}: {key!r} is not a run-config field")
        for key, param in self.params.items():
            param.check(key)
        for label, overrides in self.baselines.items():
            RunConfig(**{**self.base, **overrides})  # raises on invalid values

    def tune_param_space(self) -> dict:
        return {key: param.to_tune() for key, param in self.params.items()}
