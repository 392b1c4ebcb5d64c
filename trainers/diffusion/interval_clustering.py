"""Interval clustering of diffusion timesteps (ANT, NeurIPS 2023; docs/interval_clustering.md).

Split the indices ``0..n-1`` into exactly ``k`` contiguous, inclusive intervals
minimising the sum of per-interval costs, by dynamic programming::

    D[i, j] = min_l D[l, j-1] + cost(l+1, i)

Every builder returns ``[(start, end), ...]`` in order, covering ``0..n-1``
exactly (the next interval starts at the previous ``end + 1``; the released ANT
code restarted at ``end``, an off-by-one this module avoids).

Costs:

* L1 (SNR- or timestep-based): ``sum_{tau=l..r} |v_tau - median(v_l..r)|``.
  For monotone values (SNR schedules, timesteps) the sorted window is the
  window itself, so the cost is "sum of the top half minus sum of the bottom
  half", O(1) from prefix sums, and the whole (n, n) matrix is vectorised.
  Other input falls back to a two-heaps sweep per left end, O(n^2 log n) in
  pure Python (about a second or two for n = 1000).
* Affinity: ``-sum_{tau=l..r} A[c, tau]`` with ``c = (l + r) // 2``, O(1) from
  per-row prefix sums.

The DP itself is vectorised over (left end, right end): O(k n^2) numpy work,
a few tens of milliseconds for n = 1000, k = 8.
"""
from __future__ import annotations

import heapq
from typing import Sequence

import numpy as np

__all__ = [
    "interval_clusters",
    "interval_clusters_affinity",
    "snr_clusters",
    "timestep_clusters",
    "equal_width_clusters",
    "interval_owner",
    "l1_cost_matrix",
    "affinity_cost_matrix",
    "intervals_cost",
    "solve_intervals",
]

Intervals = list[tuple[int, int]]


def _as_1d(values) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().cpu().numpy()
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("values must be finite")
    return v


def _check_k(k: int, n: int) -> int:
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, n={n}], got k={k!r}")
    return int(k)


def l1_cost_matrix(values) -> np.ndarray:
    """(n, n) matrix, ``C[l, r]`` = L1 deviation of ``values[l..r]`` from its median
    (``inf`` below the diagonal)."""
    v = _as_1d(values)
    n = v.size
    d = np.diff(v)
    if np.all(d >= 0) or np.all(d <= 0):
        cost = _l1_cost_monotone(v, 1.0 if np.all(d >= 0) else -1.0)
    else:
        cost = _l1_cost_heaps(v)
    cost[np.tril_indices(n, -1)] = np.inf
    return cost


def _l1_cost_monotone(v: np.ndarray, sign: float) -> np.ndarray:
    """O(1) per interval: with h = len // 2, cost = top-h sum - bottom-h sum."""
    n = v.size
    p = np.concatenate([[0.0], np.cumsum(v)])
    l = np.arange(n)[:, None]
    r = np.maximum(np.arange(n)[None, :], l)  # clip the unused lower triangle
    h = (r - l + 1) // 2
    last_h = p[r + 1] - p[r + 1 - h]
    first_h = p[l + h] - p[l]
    return np.maximum(sign * (last_h - first_h), 0.0)


def _l1_cost_heaps(v: np.ndarray) -> np.ndarray:
    """Two-heaps sweep per left end (lower half max-heap holds ceil(m/2) items)."""
    n = v.size
    cost = np.zeros((n, n))
    vals = v.tolist()
    for l in range(n):
        lower: list[float] = []  # negated values
        upper: list[float] = []
        s_low = s_up = 0.0
        row = cost[l]
        for r in range(l, n):
            x = vals[r]
            if lower and x > -lower[0]:
                heapq.heappush(upper, x)
                s_up += x
            else:
                heapq.heappush(lower, -x)
                s_low += x
            if len(lower) > len(upper) + 1:
                y = -heapq.heappop(lower)
                s_low -= y
                heapq.heappush(upper, y)
                s_up += y
            elif len(upper) > len(lower):
                y = heapq.heappop(upper)
                s_up -= y
                heapq.heappush(lower, -y)
                s_low += y
            odd_median = -lower[0] if (r - l) % 2 == 0 else 0.0
            row[r] = s_up - s_low + odd_median
    return cost


def affinity_cost_matrix(A) -> np.ndarray:
    """(n, n) matrix, ``C[l, r] = -sum_{tau=l..r} A[(l+r)//2, tau]`` (``inf`` below
    the diagonal)."""
    if hasattr(A, "detach"):
        A = A.detach().cpu().numpy()
    a = np.asarray(A, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ValueError(f"A must be a non-empty square (n, n) matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("A must be finite")
    n = a.shape[0]
    p = np.concatenate([np.zeros((n, 1)), np.cumsum(a, axis=1)], axis=1)  # (n, n+1)
    l = np.arange(n)[:, None]
    r = np.maximum(np.arange(n)[None, :], l)
    c = (l + r) // 2
    cost = -(p[c, r + 1] - p[c, l])
    cost[np.tril_indices(n, -1)] = np.inf
    return cost


def solve_intervals(cost: np.ndarray, k: int) -> Intervals:
    """Optimal split of 0..n-1 into k contiguous intervals for an (n, n) cost
    matrix (``cost[l, r]`` for ``l <= r``).  Ties go to the earliest split point."""
    cost = np.asarray(cost, dtype=np.float64)
    n = cost.shape[0]
    k = _check_k(k, n)
    # shifted[l, i] = cost(l+1, i): the last interval starts right after end l.
    shifted = cost[1:, :]  # (n-1, n)
    d = cost[0].copy()  # D[:, 0]: one interval 0..i
    back = np.zeros((k, n), dtype=np.int64)
    for j in range(1, k):
        cand = d[:-1, None] + shifted  # (n-1, n), indexed [l, i]
        back[j] = np.argmin(cand, axis=0)
        d = cand[back[j], np.arange(n)]
    out: Intervals = []
    end = n - 1
    for j in range(k - 1, 0, -1):
        prev_end = int(back[j, end])
        out.append((prev_end + 1, end))
        end = prev_end
    out.append((0, end))
    out.reverse()
    return out


def intervals_cost(cost: np.ndarray, intervals: Sequence[tuple[int, int]]) -> float:
    """Total cost of a split under an (n, n) cost matrix."""
    return float(sum(cost[l, r] for l, r in intervals))


def interval_clusters(values: Sequence[float] | np.ndarray, k: int, method: str = "l1") -> Intervals:
    """Optimal k contiguous intervals minimising the L1 deviation from each
    interval's median (ANT's SNR-/timestep-based clustering); ``method="affinity"``:
    ``values`` is an (n, n) task-affinity matrix and the cost is the affinity cost
    (a binned matrix gives bin intervals: trainers/diffusion/affinity.py maps them to timesteps)."""
    if method == "affinity":
        return interval_clusters_affinity(values, k)
    if method != "l1":
        raise ValueError(f"method must be 'l1' or 'affinity', got {method!r}")
    v = _as_1d(values)
    _check_k(k, v.size)
    return solve_intervals(l1_cost_matrix(v), k)


def interval_clusters_affinity(A, k: int) -> Intervals:
    """Optimal k contiguous intervals for the task-affinity cost
    ``-sum_tau A[c, tau]`` (c the interval's middle index)."""
    cost = affinity_cost_matrix(A)
    return solve_intervals(cost, k)


def snr_clusters(snr, k: int) -> Intervals:
    """SNR-based clustering of a (T,) SNR schedule."""
    return interval_clusters(snr, k)


def equal_width_clusters(T: int, k: int) -> Intervals:
    """k contiguous intervals of near-equal width (the first ``T % k`` one wider)."""
    if isinstance(T, bool) or int(T) != T or T < 1:
        raise ValueError(f"T must be a positive integer, got T={T!r}")
    k = _check_k(k, int(T))
    base, extra = divmod(int(T), k)
    out, start = [], 0
    for j in range(k):
        width = base + (1 if j < extra else 0)
        out.append((start, start + width - 1))
        start += width
    return out


def interval_owner(bounds: Sequence[tuple[int, int]], n: int):
    """(n,) int64 tensor: the index of the interval that holds each of ``0..n-1``."""
    import torch
    owner = torch.empty(int(n), dtype=torch.long)
    for j, (lo, hi) in enumerate(bounds):
        owner[int(lo):int(hi) + 1] = j
    return owner


def timestep_clusters(T: int, k: int) -> Intervals:
    """Timestep-based clustering (values = arange(T)).

    The interval cost on arange is floor(m^2 / 4) for width m, which is convex,
    so near-equal widths are an optimum of the DP; the DP has ties (widths 1+3
    cost the same as 2+2), so the canonical near-equal split is returned
    directly rather than whichever tie the DP picks.
    """
    return equal_width_clusters(T, k)
