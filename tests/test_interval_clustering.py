"""Interval clustering (docs/interval_clustering.md) against brute force, coverage and speed."""
import itertools
import time

import numpy as np
import pytest

from trainers.diffusion.interval_clustering import (
    affinity_cost_matrix,
    equal_width_clusters,
    interval_clusters,
    interval_clusters_affinity,
    intervals_cost,
    l1_cost_matrix,
    snr_clusters,
    timestep_clusters,
)


def all_splits(n, k):
    for cuts in itertools.combinations(range(1, n), k - 1):
        bounds = (0,) + cuts + (n,)
        yield [(bounds[i], bounds[i + 1] - 1) for i in range(k)]


def l1_cost(values, l, r):
    w = np.asarray(values[l : r + 1], dtype=float)
    return float(np.abs(w - np.median(w)).sum())


def affinity_cost(A, l, r):
    return -float(A[(l + r) // 2, l : r + 1].sum())


def assert_covers(intervals, n, k):
    assert len(intervals) == k
    assert intervals[0][0] == 0 and intervals[-1][1] == n - 1
    for (s, e), (s2, _) in zip(intervals, intervals[1:]):
        assert s2 == e + 1
    assert all(s <= e for s, e in intervals)


def check_against_brute(values_or_A, k, solver, cost_fn):
    n = len(values_or_A)
    got = solver(values_or_A, k)
    assert_covers(got, n, k)
    costs = {tuple(sp): sum(cost_fn(values_or_A, l, r) for l, r in sp) for sp in all_splits(n, k)}
    best = min(costs.values())
    got_cost = sum(cost_fn(values_or_A, l, r) for l, r in got)
    assert got_cost == pytest.approx(best, abs=1e-9)
    optima = [sp for sp, c in costs.items() if abs(c - best) <= 1e-9]
    if len(optima) == 1:
        assert tuple(got) == optima[0]


def linear_snr(T=1000):
    betas = np.linspace(1e-4, 0.02, T)
    abar = np.cumprod(1.0 - betas)
    return abar / (1.0 - abar)


@pytest.mark.parametrize("kind", ["random", "increasing", "decreasing", "ties"])
def test_l1_dp_matches_brute_force(kind):
    rng = np.random.default_rng({"random": 0, "increasing": 1, "decreasing": 2, "ties": 3}[kind])
    for n in range(1, 11):
        for _ in range(3):
            v = rng.normal(size=n) * rng.choice([1.0, 100.0])
            if kind == "increasing":
                v = np.sort(v)
            elif kind == "decreasing":
                v = np.sort(v)[::-1]
            elif kind == "ties":
                v = rng.integers(0, 3, size=n).astype(float)
            for k in range(1, n + 1):
                check_against_brute(v, k, interval_clusters, l1_cost)


def test_cost_matrix_monotone_and_heap_paths_agree_with_median():
    rng = np.random.default_rng(5)
    for v in [rng.normal(size=40), np.sort(rng.exponential(size=40)), linear_snr(60)]:
        C = l1_cost_matrix(v)
        for l in range(0, 40, 3):
            for r in range(l, 40, 4):
                assert C[l, r] == pytest.approx(l1_cost(v, l, r), rel=1e-9, abs=1e-9)
        assert np.isinf(C[5, 4])


def test_affinity_dp_matches_brute_force():
    rng = np.random.default_rng(7)
    for n in range(1, 10):
        for _ in range(3):
            A = rng.normal(size=(n, n))
            A = (A + A.T) / 2
            for k in range(1, n + 1):
                check_against_brute(A, k, interval_clusters_affinity, affinity_cost)
    A = rng.normal(size=(30, 30))
    C = affinity_cost_matrix(A)
    assert C[3, 17] == pytest.approx(affinity_cost(A, 3, 17))


def test_snr_clusters_linear_schedule_fast_and_exact_cover():
    snr = linear_snr(1000)
    interval_clusters(snr[:50], 3)  # warm-up
    t0 = time.perf_counter()
    iv = snr_clusters(snr, 8)
    dt = time.perf_counter() - t0
    print(f"\ninterval_clusters(n=1000, k=8, linear-schedule SNR): {dt * 1000:.1f} ms -> {iv}")
    assert dt < 1.0
    assert_covers(iv, 1000, 8)
    # Local optimality: moving any single boundary by one never lowers the cost.
    C = l1_cost_matrix(snr)
    base = intervals_cost(C, iv)
    for j in range(7):
        for step in (-1, 1):
            moved = list(iv)
            e = moved[j][1] + step
            if moved[j][0] <= e < moved[j + 1][1]:
                moved[j] = (moved[j][0], e)
                moved[j + 1] = (e + 1, moved[j + 1][1])
                assert intervals_cost(C, moved) >= base - 1e-9 * max(1.0, abs(base))


@pytest.mark.parametrize("T,k", [(1000, 8), (1000, 5), (10, 4), (7, 3), (9, 9), (5, 1)])
def test_timestep_clusters_near_equal_and_optimal(T, k):
    iv = timestep_clusters(T, k)
    assert_covers(iv, T, k)
    widths = [e - s + 1 for s, e in iv]
    assert max(widths) - min(widths) <= 1
    assert iv == equal_width_clusters(T, k)
    C = l1_cost_matrix(np.arange(T))
    dp = interval_clusters(np.arange(T), k)
    assert intervals_cost(C, iv) == pytest.approx(intervals_cost(C, dp))


def test_released_code_off_by_one_is_avoided():
    # Three flat steps: the unique optimum is exactly the steps.
    v = [0.0] * 4 + [10.0] * 3 + [50.0] * 5
    assert interval_clusters(v, 3) == [(0, 3), (4, 6), (7, 11)]


def test_bad_k_raises():
    for k in (0, 6, -1):
        with pytest.raises(ValueError, match="k"):
            interval_clusters([1, 2, 3, 4, 5], k)
    with pytest.raises(ValueError, match="k"):
        equal_width_clusters(3, 4)
    with pytest.raises(ValueError, match="k"):
        interval_clusters_affinity(np.eye(3), 0)
    with pytest.raises(ValueError):
        interval_clusters([], 1)
