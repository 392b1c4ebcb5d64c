"""One bench invocation: measure the suite, derive the metrics, gate them against the baseline,
print the table, log to MLflow and the local history, optionally re-record the baseline.
platform/bench/cli.py is only the command line around :func:`run_bench`.

The metrics are described in speed.py and quality.py; the gate in gate.py.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import sys
import time
import uuid

from platform.bench.baseline import Baseline
from platform.bench.history import append_history, invocation_record
from platform.bench.judge import BenchResult, judge
from platform.bench.options import ENGINE_TEXT, EXPERIMENT, BenchOptions, plan
from platform.bench.printing import print_report
from platform.bench.processes import measure_processes
from platform.bench.provenance import git_commit, host_info
from platform.bench.quality import measure_quality, quality_stats
from platform.bench.speed import interleaved_cases, measure_speed, speed_stats
from trainers.files import atomic_write_json
from trainers.training.tracking import MlflowRun


def run_bench(opts: BenchOptions, out=None) -> BenchResult:
    """Run the bench described by ``opts``; ``result.exit_code`` is 1 on a regression, else 0."""
    out = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    p = plan(opts)
    opts, conditions = p.opts, p.conditions
    started = time.perf_counter()
    now = _dt.datetime.now(_dt.timezone.utc)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    host, git = host_info(), git_commit()
    params = {"suite": opts.suite, "scale": opts.scale, "rounds": p.rounds, "warmup": p.warmup, **conditions,
              **host, "git_commit": git, "baseline": opts.baseline, "cases": ",".join(
                  c.name for c in [*p.speed_cases, *p.quality_cases])}

    say(f"DTR platform bench: suite {opts.suite}, scale {opts.scale}, device {opts.device}, "
        f"{opts.threads} thread(s), git {git}, host {host['host']} ({host['cpus']} CPUs, torch {host['torch']})")
    if p.speed_cases:
        say(f"  training steps via {ENGINE_TEXT[opts.engine]}")
    tracker = MlflowRun.new(EXPERIMENT, f"bench-{opts.suite}-{opts.scale}-{stamp}", params=params,
                            tags={"bench.kind": "invocation", "bench.suite": opts.suite, "bench.scale": opts.scale},
                            enabled=opts.mlflow)
    contention = math.nan
    try:
        with held_threads(opts.threads):
            stats = []
            if p.speed_cases:
                say("speed cases:")
                stats += measure_processes(p, say)
            if interleaved_cases(p.speed_cases):
                timings = measure_speed(p, say)
                stats += speed_stats(p.speed_cases, timings.rounds, conditions, timings.info)
                contention = timings.contention
            if p.quality_cases:
                say("quality cases (trainers.training.run.train per seed):")
                fids = measure_quality(p.quality_cases, opts, stamp, tracker.run_id, say)
                stats += quality_stats(p.quality_cases, fids, {"threads": opts.threads, "device": opts.device})
            result = judge(stats, opts, p.speed_cases)
            wall = time.perf_counter() - started
            print_report(result, opts, say, wall)
            result.record = invocation_record(
                {"time": now.isoformat(), "run_id": tracker.run_id or uuid.uuid4().hex, "wall_s": wall,
                 "suite": opts.suite, "scale": opts.scale, "rounds": p.rounds, "warmup": p.warmup,
                 "git_commit": git, **host, **conditions, "contention": contention}, result)
            hist = append_history(result.record, opts.history)
            artifact = opts.json_out or os.path.join(os.path.dirname(hist), f"bench-{stamp}.json")
            atomic_write_json(artifact, result.record, indent=1)
            log_result(tracker, result, artifact, git)
            if opts.update_baseline:
                baseline = Baseline.load(opts.baseline)
                baseline.update(opts.scale, result.stats, {"time": now.isoformat(), "git_commit": git,
                                                           "rounds": p.rounds, **host, **conditions})
                baseline.save()
                say(f"baseline updated: {opts.baseline} (scale {opts.scale}, {len(result.stats)} metrics); exit 0")
                result.exit_code = 0
            say(f"history: {hist}   result JSON: {artifact}" + (f"   MLflow run {tracker.run_id} in experiment "
                                                                 f"'{EXPERIMENT}'" if tracker.run_id else ""))
    except BaseException as err:
        tracker.set_tags({"error": f"{type(err).__name__}: {err}"[:4000]})
        tracker.finish("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    return result


def log_result(tracker: MlflowRun, result: BenchResult, artifact: str, git: str) -> None:
    """Every metric's mean, band and std, the claims' pass flags, the result tags and the record
    JSON into the invocation's MLflow run, which then finishes."""
    metrics = {}
    for s in result.stats:
        for key, value in ((s.name, s.mean), (f"{s.name}_band", s.band), (f"{s.name}_std", s.std)):
            if math.isfinite(value):
                metrics[key] = float(value)
    for c in result.claims:
        if c.status != "n/a":
            metrics[f"claim_{c.name}_pass"] = float(not c.failed)
    tracker.log_metrics(metrics, step=0)
    tracker.set_tags({"bench.result": result.record["result"], "bench.git_commit": git,
                      "bench.regressions": ",".join(v.name for v in result.verdicts if v.regressed) or "none"})
    tracker.log_artifact(artifact)
    tracker.finish()


@contextlib.contextmanager
def held_threads(n: int):
    """torch at ``n`` threads, and numpy/scipy's BLAS too (FID's covariance and eigenvalues) when
    threadpoolctl is installed: idle BLAS threads spinning would otherwise be billed to the CPU clock."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        blas = contextlib.nullcontext()
    else:
        import numpy  # noqa: F401 -- limits only reach BLAS libraries already loaded
        import scipy.linalg  # noqa: F401 -- scipy ships its own OpenBLAS (FID's eigenvalues)
        blas = threadpool_limits(limits=n)
    try:
        with blas:
            yield
    finally:
        torch.set_num_threads(before)
