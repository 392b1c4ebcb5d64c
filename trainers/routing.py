"""Task-routing masks for diffusion models (Denoising Task Routing, ICLR 2024).

A mask table ``M`` has shape ``(T, C)``: row ``t`` says which of the ``C``
channels the denoising task ``t`` may read in a routed block (methods.md §1).
Names follow the paper: ``beta`` is the activation ratio (fraction of channels a
task reads), ``alpha`` the shift power of the sliding window.

Kinds:
  none   plain model (no table)
  dtr    fixed sliding window, the released-code construction (default)
  random R-TR, the paper's negative baseline; seeded, one table per block
  cdtr   K contiguous timestep clusters, one DTR row per cluster (App. F)
  ercdt  half the channels shared, the other half split in K segments (App. F)
  learned         Switch-DiT: a per-block router makes a real-valued mask from E
                  zero-initialised linear experts gated by the timestep (§1.6);
                  ``experts`` (E), ``top_k`` (k), ``prior_weight`` (diffusion-prior loss weight)
  learned_window  beyond the papers: DTR's window of width W with a learned monotone
                  start curve s(t) (soft edges in training, exact 0/1 in eval)

The learned kinds hold parameters, not a table: ``mask_table`` returns None for them
and the model builds the router (trainers/models/switch_routing.py, learned_window.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

ROUTING_KINDS = ("none", "dtr", "random", "cdtr", "ercdt", "learned", "learned_window")
LEARNED_KINDS = ("learned", "learned_window")
CLUSTER_METHODS = ("equal", "snr")
Bounds = Sequence[tuple[int, int]]


def _check_common(num_tasks: int, channels: int, beta: float | None = None, alpha: float | None = None) -> None:
    if int(num_tasks) < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
    if int(channels) < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if beta is not None and not (0.0 < float(beta) <= 1.0):
        raise ValueError(f"beta (activation ratio) must be in (0, 1], got {beta}")
    if alpha is not None and not float(alpha) > 0.0:
        raise ValueError(f"alpha (shift power) must be > 0, got {alpha}")


def window_width(channels: int, beta: float) -> int:
    """``W = floor(beta * C)`` (the released code's ``int(C * beta)``), at least 1."""
    return max(1, int(channels * beta))


def dtr_window_starts(num_tasks: int, channels: int, beta: float, alpha: float) -> np.ndarray:
    """Window start ``s_t = round_half_even((t / (T-1))**alpha * (C - W))`` for every task."""
    _check_common(num_tasks, channels, beta, alpha)
    shift = channels - window_width(channels, beta)
    if num_tasks == 1:
        return np.zeros(1, dtype=np.int64)
    progress = np.arange(num_tasks, dtype=np.float64) / (num_tasks - 1)
    return (progress**alpha * shift).round().astype(np.int64)


def dtr_mask(num_tasks: int, channels: int, beta: float = 0.8, alpha: float = 4.0) -> torch.Tensor:
    """DTR sliding-window table (T, C) float32: row t is 1 on ``[s_t, s_t + W)``."""
    starts = torch.from_numpy(dtr_window_starts(num_tasks, channels, beta, alpha))
    width = window_width(channels, beta)
    cols = torch.arange(channels)
    inside = (cols[None, :] >= starts[:, None]) & (cols[None, :] < starts[:, None] + width)
    return inside.to(torch.float32)


def random_mask(num_tasks: int, channels: int, beta: float = 0.8, seed: int = 0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """R-TR table (T, C) float32: each row has exactly W ones at uniformly drawn channels.

    Reproducible from ``seed`` (or continues ``generator`` when one is given,
    which is how a model draws a distinct table per block).
    """
    _check_common(num_tasks, channels, beta)
    if generator is None:
        generator = torch.Generator().manual_seed(int(seed))
    width = window_width(channels, beta)
    order = torch.rand(num_tasks, channels, generator=generator).argsort(dim=1)
    mask = torch.zeros(num_tasks, channels, dtype=torch.float32)
    mask.scatter_(1, order[:, :width], 1.0)
    return mask


def check_bounds(bounds: Bounds, num_tasks: int) -> list[tuple[int, int]]:
    """Validate contiguous inclusive cluster bounds covering ``0..num_tasks-1``."""
    bounds = [(int(lo), int(hi)) for lo, hi in bounds]
    if not 1 <= len(bounds) <= num_tasks:
        raise ValueError(f"clusters (K) must be in [1, num_tasks={num_tasks}], got {len(bounds)}")
    expected = 0
    for lo, hi in bounds:
        if lo != expected or hi < lo:
            raise ValueError(f"cluster bounds must be contiguous inclusive intervals from 0, got {bounds}")
        expected = hi + 1
    if expected != num_tasks:
        raise ValueError(f"cluster bounds must end at num_tasks-1={num_tasks - 1}, got {bounds}")
    return bounds


def equal_width_bounds(num_tasks: int, clusters: int) -> list[tuple[int, int]]:
    """K contiguous intervals of (near-)equal width covering ``0..T-1``."""
    if not 1 <= int(clusters) <= int(num_tasks):
        raise ValueError(f"clusters (K) must be in [1, num_tasks={num_tasks}], got {clusters}")
    edges = np.linspace(0, num_tasks, int(clusters) + 1).round().astype(int)
    return [(int(edges[k]), int(edges[k + 1]) - 1) for k in range(int(clusters))]


def _cluster_of_task(bounds: list[tuple[int, int]], num_tasks: int) -> torch.Tensor:
    owner = torch.empty(num_tasks, dtype=torch.long)
    for k, (lo, hi) in enumerate(bounds):
        owner[lo:hi + 1] = k
    return owner


def cdtr_mask(num_tasks: int, channels: int, beta: float, alpha: float, bounds: Bounds) -> torch.Tensor:
    """Clustered DTR: every task of cluster k gets row k of the K-task DTR table."""
    _check_common(num_tasks, channels, beta, alpha)
    bounds = check_bounds(bounds, num_tasks)
    rows = dtr_mask(len(bounds), channels, beta, alpha)
    return rows[_cluster_of_task(bounds, num_tasks)]


def ercdt_mask(num_tasks: int, channels: int, bounds: Bounds) -> torch.Tensor:
    """ERCDT: the first ``C // 2`` channels are shared by all tasks; the rest is split
    into K (near-)equal segments and cluster k also reads segment k."""
    _check_common(num_tasks, channels)
    bounds = check_bounds(bounds, num_tasks)
    shared = channels // 2
    if channels - shared < len(bounds):
        raise ValueError(f"channels={channels} too few to give each of K={len(bounds)} clusters a segment")
    segments = np.array_split(np.arange(shared, channels), len(bounds))
    rows = torch.zeros(len(bounds), channels, dtype=torch.float32)
    rows[:, :shared] = 1.0
    for k, seg in enumerate(segments):
        rows[k, seg] = 1.0
    return rows[_cluster_of_task(bounds, num_tasks)]


@dataclass(frozen=True)
class RoutingSpec:
    """Plain-data description of a routing; a valid search-space value and MLflow param set.

    ``clusters`` (K) and ``cluster_method`` matter only for cdtr/ercdt;
    ``cluster_method="snr"`` places the K bounds by interval clustering of the
    schedule's SNR (``schedule``), ``"equal"`` uses equal widths.
    ``seed`` matters only for ``random``.
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
        if self.cluster_method == "equal":
            return equal_width_bounds(num_tasks, self.clusters)
        if not 1 <= self.clusters <= num_tasks:
            raise ValueError(f"clusters (K) must be in [1, num_tasks={num_tasks}], got {self.clusters}")
        from trainers.diffusion import GaussianDiffusion
        from trainers.interval_clustering import snr_clusters

        snr = GaussianDiffusion(schedule=self.schedule, num_timesteps=num_tasks).snr
        return snr_clusters(np.asarray(snr), self.clusters)

    def mask_table(self, num_tasks: int, channels: int, depth: int) -> torch.Tensor | None:
        """Masks of a ``depth``-block model: (1, T, C) when shared, (depth, T, C) for R-TR;
        None for the plain model and for the learned kinds (their masks come from a module)."""
        if self.kind == "none" or self.learned:
            return None
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
