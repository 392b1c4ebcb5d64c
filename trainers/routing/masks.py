"""Task-routing masks for diffusion models (Denoising Task Routing, ICLR 2024).

A mask table ``M`` has shape ``(T, C)``: row ``t`` says which of the ``C``
channels the denoising task ``t`` may read in a routed block (docs/routing.md).
Names follow the paper: ``beta`` is the activation ratio (fraction of channels a
task reads), ``alpha`` the shift power of the sliding window.

Kinds:
  none   plain model (no table)
  dtr    fixed sliding window, the released-code construction (default)
  random R-TR, the paper's negative baseline; seeded, one table per block
  cdtr   K contiguous timestep clusters, one DTR row per cluster (App. F)
  ercdt  half the channels shared, the other half split in K segments (App. F)
  maxroaming  R-TR's tables re-drawn every ``roaming_every`` steps (App. F; roaming.py)
  learned         Switch-DiT: a per-block router makes a real-valued mask from E
                  zero-initialised linear experts gated by the timestep (§1.6);
                  ``experts`` (E), ``top_k`` (k), ``prior_weight`` (diffusion-prior loss weight)
  learned_window  beyond the papers: DTR's window of width W with a learned monotone
                  start curve s(t) (exact 0/1 windows, soft-edge gradients in training)

The learned kinds hold parameters, not a table: ``mask_table`` returns None for them
and the model builds the router (trainers/models/switch_routing.py, learned_window.py).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from trainers.diffusion.interval_clustering import interval_owner

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


def cdtr_mask(num_tasks: int, channels: int, beta: float, alpha: float, bounds: Bounds) -> torch.Tensor:
    """Clustered DTR: every task of cluster k gets row k of the K-task DTR table."""
    _check_common(num_tasks, channels, beta, alpha)
    bounds = check_bounds(bounds, num_tasks)
    rows = dtr_mask(len(bounds), channels, beta, alpha)
    return rows[interval_owner(bounds, num_tasks)]


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
    return rows[interval_owner(bounds, num_tasks)]

