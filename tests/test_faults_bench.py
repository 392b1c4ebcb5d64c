"""The faults bench (python -m platform.bench --suite faults) without running its cases: its
percentiles and summaries, checked by hand, and its one-line refusal of an unknown case."""
import pytest

from platform.bench.cli import main
from platform.bench.tracking_store import percentiles, summarise


def test_percentiles_are_nearest_rank_in_milliseconds():
    got = percentiles([i / 1000 for i in range(100, 0, -1)])  # 1..100 ms, in any order
    assert got == pytest.approx({"p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "max_ms": 100.0})
    assert percentiles([0.25]) == pytest.approx({"p50_ms": 250.0, "p95_ms": 250.0, "p99_ms": 250.0, "max_ms": 250.0})
    assert percentiles([]) == {}


def test_summary_counts_failed_requests_apart():
    records = [["log_metrics", 0.010, None], ["log_metrics", 0.030, None], ["create_run", 0.020, None],
               ["log_metrics", 5.0, "MlflowException: database is locked"]]
    got = summarise(records, wall=2.0, writers=2, crashed=[])
    assert (got["requests"], got["failed"], got["requests_per_s"]) == (4, 1, 2.0)
    assert got["errors"] == {"MlflowException: database is locked": 1}
    assert got["latency"]["max_ms"] == pytest.approx(30.0)  # latencies of the requests that went through
    assert got["by_kind"]["log_metrics"]["p50_ms"] == pytest.approx(10.0)
    assert got["mean_ms"] == pytest.approx(20.0)


def test_unknown_case_is_one_line_and_exit_2(capsys):
    assert main(["--suite", "faults", "--cases", "preemption,nope"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["error: unknown case(s) ['nope'] of --suite faults; "
                   "known: ['preemption', 'outage', 'sweep', 'tracking']"]
