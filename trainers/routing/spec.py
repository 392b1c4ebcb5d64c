"""``RoutingSpec``: the plain-data description of a model's routing, and its mask tables."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from trainers.diffusion.gaussian import GaussianDiffusion
from trainers.diffusion.interval_clustering import equal_width_clusters, snr_clusters
from trainers.routing.masks import cdtr_mask, dtr_mask, ercdt_mask, random_mask
from trainers.routing.roaming import roaming_tables

ROUTING_KINDS = ("none", "dtr", "random", "cdtr", "ercdt", "learned", "learned_window", "maxroaming")
LEARNED_KINDS = ("learned", "learned_window")
CLUSTER_METHODS = ("equal", "snr")
WINDOW_KINDS = ("dtr", "random", "cdtr", "maxroaming")  # kinds whose rows read beta * C channels


def effective_routing_kind(kind: str, beta: float) -> str:
    """The routing a model really has: a window kind at beta = 1 reads every channel, which is
    the plain model ("none").  Tables, labels and plots all use this one rule."""
    return "none" if kind in WINDOW_KINDS and float(beta) == 1.0 else kind


@dataclass(frozen=True)
class RoutingSpec:
    """Plain-data description of a routing; a valid search-space value and MLflow param set.

    ``clusters`` (K) and ``cluster_method`` matter only for cdtr/ercdt;
    ``cluster_method="snr"`` places the K bounds by interval clustering of the
    schedule's SNR (``schedule``), ``"equal"`` uses equal widths.
    ``seed`` draws R-TR's tables (``random``), MaxRoaming's tables of every period (``maxroaming``,
    trainers/routing/roaming.py) and Switch-DiT's slot orders of the prior matching (``learned``).
    ``experts`` (E), ``top_k`` (k) and ``prior_weight`` matter only for ``learned`` (Switch-DiT).
    """

    kind: str = "none"
    beta: float = 0.8
    alpha: float = 4.0
    clusters: int = 4
    cluster_method: str = "equal"
    schedule: str = "linear"
    seed: int = 0
    experts: int = 3
    top_k: int = 2
    prior_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ROUTING_KINDS:
            raise ValueError(f"routing kind must be one of {ROUTING_KINDS}, got {self.kind!r}")
        if not (0.0 < float(self.beta) <= 1.0):
            raise ValueError(f"beta (activation ratio) must be in (0, 1], got {self.beta}")
        if not float(self.alpha) > 0.0:
            raise ValueError(f"alpha (shift power) must be > 0, got {self.alpha}")
        if int(self.clusters) < 1:
            raise ValueError(f"clusters (K) must be >= 1, got {self.clusters}")
        if self.cluster_method not in CLUSTER_METHODS:
            raise ValueError(f"cluster_method must be one of {CLUSTER_METHODS}, got {self.cluster_method!r}")
        if int(self.experts) < 1:
            raise ValueError(f"experts (E) must be >= 1, got {self.experts}")
        if not 1 <= int(self.top_k) <= int(self.experts):
            raise ValueError(f"top_k (k) must be in [1, experts={self.experts}], got {self.top_k}")
        if not float(self.prior_weight) >= 0.0:
            raise ValueError(f"prior_weight must be >= 0, got {self.prior_weight}")

    @property
    def active(self) -> bool:
        return self.kind != "none"

    @property
    def learned(self) -> bool:
        """True for the kinds whose routing is a trained module rather than a fixed table."""
        return self.kind in LEARNED_KINDS

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | "RoutingSpec" | None) -> "RoutingSpec":
        if data is None:
            return cls()
        if isinstance(data, RoutingSpec):
            return data
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown routing fields: {sorted(unknown)}")
        return cls(**data)

    def cluster_bounds(self, num_tasks: int) -> list[tuple[int, int]]:
        if not 1 <= self.clusters <= num_tasks:
            raise ValueError(f"clusters (K) must be in [1, num_tasks={num_tasks}], got {self.clusters}")
        if self.cluster_method == "equal":
            return equal_width_clusters(num_tasks, self.clusters)
        snr = GaussianDiffusion(schedule=self.schedule, num_timesteps=num_tasks).snr
        return snr_clusters(np.asarray(snr), self.clusters)

    def mask_table(self, num_tasks: int, channels: int, depth: int) -> torch.Tensor | None:
        """Masks of a ``depth``-block model: (1, T, C) when shared, (depth, T, C) for R-TR and
        MaxRoaming (its period-0 tables; the training loop re-draws them, roaming.py); None for the
        plain model and for the learned kinds (their masks come from a module)."""
        if self.kind == "none" or self.learned:
            return None
        if self.kind == "maxroaming":
            return roaming_tables(num_tasks, channels, depth, self.beta, self.seed, period=0)
        if self.kind == "random":
            gen = torch.Generator().manual_seed(int(self.seed))
            return torch.stack([random_mask(num_tasks, channels, self.beta, generator=gen) for _ in range(depth)])
        if self.kind == "dtr":
            table = dtr_mask(num_tasks, channels, self.beta, self.alpha)
        elif self.kind == "cdtr":
            table = cdtr_mask(num_tasks, channels, self.beta, self.alpha, self.cluster_bounds(num_tasks))
        else:
            table = ercdt_mask(num_tasks, channels, self.cluster_bounds(num_tasks))
        return table.unsqueeze(0)
