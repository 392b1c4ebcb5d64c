"""One bench invocation: measure the suite, derive the metrics, gate them against the
baseline, print the table, log to MLflow and the local history, optionally re-record the
baseline.  ``platform/bench.py`` is only the command line around :func:`run_bench`.

Metrics (all lower-is-better; ``<case>`` is dtr, rtr, switch):
  <case>_step_ratio             t_step(<case>) / t_step(vanilla), per round          gated
  vanilla_step_per_calib        t_step(vanilla) / t(calib GEMMs), per round          gated with --gate-absolute
  sample_image_per_vanilla_step t(sample one image) / t_step(vanilla), per round     gated
  fid_per_vanilla_step          t(FID of 2k samples) / t_step(vanilla), per round    gated
  calib_ms, step_ms_<case|vanilla>, sample_ms_per_image, fid_ms   absolute, reported (gated
                                with --gate-absolute: only meaningful on the baseline's machine)
  fid_k_vanilla, fid_k_dtr      FID-k after a short training run, per seed           gated
  dtr_fid_k_ratio               FID-k(DTR) / FID-k(vanilla), paired by seed          gated
Ratios to quantities timed in the same round are what make the gate usable on a shared,
noisy machine: a slower (or busier) box shifts the absolute times, not the ratios.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace

import torch

from trainers.bench import cases as C
from trainers.bench.gate import (CLAIM_LIMIT, FASTER, REGRESSION, Baseline, ClaimResult, Stat, Verdict, claim_check,
                                 compare, ratio_values, verdict_dict)
from trainers.bench.history import append_history, history_path

DEFAULT_BASELINE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "baseline.json")
EXPERIMENT = "benchmarks"
SUITES = ("speed", "quality", "all")
ENGINE_TEXT = {"deepspeed": "DeepSpeed engine (ZeRO-0, fp32, torch AdamW client optimizer) + EMA, as trainers/train.py",
               "torch": "NO DeepSpeed: the same DiffusionObjective + torch AdamW + EMA (engine=torch)"}


@dataclass
class BenchOptions:
    suite: str = "speed"
    scale: str = "full"
    rounds: int | None = None        # None: the suite's default
    warmup: int | None = None
    cases: tuple[str, ...] = ()      # () = all cases of the suite
    seeds: tuple[int, ...] = ()      # () = the quality cases' own seeds
    threads: int = 1
    engine: str = "deepspeed"
    device: str = "cpu"
    clock: str | None = None         # None: "cpu" (process CPU time) on CPU, "wall" on CUDA
    baseline: str = DEFAULT_BASELINE
    update_baseline: bool = False
    gate_absolute: bool = False
    mlflow: bool = True
    history: str | None = None
    json_out: str | None = None


@dataclass
class BenchResult:
    stats: list[Stat] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    claims: list[ClaimResult] = field(default_factory=list)
    exit_code: int = 0
    record: dict = field(default_factory=dict)


# --- deriving metrics ---------------------------------------------------------------------------

def _ms(values) -> tuple[float, ...]:
    return tuple(v * 1000.0 for v in values)


def speed_stats(speed_cases, times: dict[str, list[float]], conditions: dict) -> list[Stat]:
    """Metrics of the interleaved timings ``times`` (seconds per unit, one value per round)."""
    by_name = {c.name: c for c in speed_cases}
    fp = {c.name: C.fingerprint(c, conditions) for c in speed_cases}
    ratios, absolute = [], []
    calib, vanilla = times.get("calib"), times.get("vanilla")
    for case in speed_cases:
        t = times[case.name]
        if isinstance(case, C.CalibCase):
            absolute.append(Stat("calib_ms", _ms(t), "ms", False, fp[case.name], case.describe()))
        elif isinstance(case, C.TrainStepCase):
            absolute.append(Stat(f"step_ms_{case.name}", _ms(t), "ms", False, fp[case.name], case.describe()))
            if case.name == "vanilla" and calib:
                # a DiT step over a GEMM chain: the two react differently to the state of the
                # machine (measured: calib +38 % between back-to-back runs, DiT step +8 %), so
                # like the absolute times it is gated only with --gate-absolute
                ratios.append(Stat("vanilla_step_per_calib", ratio_values(t, calib), "x", False,
                                   C.fingerprint(case, by_name["calib"], conditions),
                                   "vanilla step time / calibration GEMM time"))
            elif case.name != "vanilla" and vanilla:
                ratios.append(Stat(f"{case.name}_step_ratio", ratio_values(t, vanilla), "x", True,
                                   C.fingerprint(case, by_name["vanilla"], conditions),
                                   f"{C.ROUTED.get(case.name, case.name)} step time / vanilla step time"))
        elif isinstance(case, C.SampleCase):
            absolute.append(Stat("sample_ms_per_image", _ms(t), "ms", False, fp[case.name], case.describe()))
            if vanilla:
                ratios.append(Stat("sample_image_per_vanilla_step", ratio_values(t, vanilla), "x", True,
                                   C.fingerprint(case, by_name["vanilla"], conditions),
                                   "sampling time per image / vanilla step time"))
        elif isinstance(case, C.FidCase):
            absolute.append(Stat("fid_ms", _ms(t), "ms", False, fp[case.name], case.describe()))
            if vanilla:
                ratios.append(Stat("fid_per_vanilla_step", ratio_values(t, vanilla), "x", True,
                                   C.fingerprint(case, by_name["vanilla"], conditions),
                                   "FID evaluation time / vanilla step time"))
    return ratios + absolute


def quality_config(case, seed: int, **fields):
    """The RunConfig one quality run trains (the case's preset, its overrides, routing, seed)."""
    from trainers.presets import preset_config
    return preset_config(case.preset, **case.overrides, routing=case.routing, seed=seed, **fields)


def _quality_fingerprint(case, seeds, conditions: dict) -> str:
    """Hash of the resolved config (so a changed preset is a changed case), seeds and conditions."""
    resolved = {k: v for k, v in quality_config(case, 0).to_dict().items()
                if k not in ("seed", "run_name", "run_dir", "progress", "mlflow_experiment")}
    return C.fingerprint(resolved, list(seeds), conditions)


def quality_stats(quality_cases, fids: dict[str, dict[int, float]], conditions: dict) -> list[Stat]:
    """``fids[case][seed]`` -> FID-k per case, and DTR/vanilla paired by seed."""
    out = []
    by_name = {c.name: c for c in quality_cases}
    for case in quality_cases:
        seeds = sorted(fids.get(case.name, {}))
        out.append(Stat(f"fid_k_{case.name}", tuple(fids[case.name][s] for s in seeds), "FID", True,
                        _quality_fingerprint(case, seeds, conditions), case.describe()))
    if "dtr" in fids and "vanilla" in fids:
        seeds = sorted(set(fids["dtr"]) & set(fids["vanilla"]))
        out.append(Stat("dtr_fid_k_ratio", ratio_values([fids["dtr"][s] for s in seeds],
                                                        [fids["vanilla"][s] for s in seeds]), "x", True,
                        C.fingerprint(_quality_fingerprint(by_name["dtr"], seeds, conditions),
                                      _quality_fingerprint(by_name["vanilla"], seeds, conditions)),
                        "FID-k(DTR) / FID-k(vanilla), paired by seed"))
    return out


# --- running ------------------------------------------------------------------------------------

def select_speed_cases(all_cases, names: tuple[str, ...]):
    """The requested speed cases, plus calib and vanilla (every ratio needs them)."""
    if not names:
        return list(all_cases)
    wanted = set(names) | {"calib", "vanilla"}
    return [c for c in all_cases if c.name in wanted]


def measure_speed(speed_cases, opts: BenchOptions, rounds: int, warmup: int, clock: str, say):
    from trainers.bench.measure import build_runner, interleave
    device = torch.device(opts.device)
    runners = []
    for case in speed_cases:
        t0 = time.perf_counter()
        runners.append(build_runner(case, device, opts.engine))
        say(f"  ready {case.name:<8} {case.describe()}  ({time.perf_counter() - t0:.1f}s)")
    say(f"  timing: {warmup} warm-up pass(es), then {rounds} interleaved rounds, {clock} clock, "
        "fastest unit of each case per round")

    def on_round(r, got):
        say(f"  round {r + 1}/{rounds}: " + "  ".join(f"{k} {v * 1000:.0f}ms" for k, v in got.items()))
    timings = interleave(runners, rounds, warmup, clock, device, on_round)
    say(f"  machine contention during timing: wall/cpu = {timings.contention:.2f} (about 1 when the cores are ours)")
    return timings


def measure_quality(quality_cases, opts: BenchOptions, stamp: str, parent_run_id: str | None, say) -> dict:
    """Train every case for every seed (seed-major, so a drifting machine hits both alike)."""
    from trainers.paths import runs_dir
    from trainers.train import train
    fids: dict[str, dict[int, float]] = {c.name: {} for c in quality_cases}
    seeds = sorted({s for c in quality_cases for s in (opts.seeds or c.seeds)})
    for seed in seeds:
        for case in quality_cases:
            if seed not in (opts.seeds or case.seeds):
                continue
            name = f"bench-{case.name}-s{seed}"
            cfg = quality_config(case, seed, run_name=name, mlflow_experiment=EXPERIMENT,
                                 run_dir=os.path.join(runs_dir(), "bench", "quality", stamp, f"{case.name}-s{seed}"))
            t0 = time.perf_counter()
            final = train(cfg, parent_run_id=parent_run_id, mlflow_enabled=opts.mlflow, threads=opts.threads)
            fids[case.name][seed] = float(final["fid"])
            say(f"  {name}: FID-{cfg.final_eval_samples} ({final.get('feature_set')}) {final['fid']:.3f} "
                f"in {time.perf_counter() - t0:.0f}s")
    return fids


def _git_commit() -> str:
    from trainers.paths import PROJECT_ROOT
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=20).stdout.strip()
        return (sha or "unknown") + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class _Mlflow:
    """The invocation's run in the ``benchmarks`` experiment (a no-op when disabled)."""

    def __init__(self, enabled: bool, run_name: str, params: dict, tags: dict):
        self.run_id = None
        if not enabled:
            return
        import mlflow
        from mlflow.entities import Param
        from trainers.tracking import ensure_experiment
        self.mlflow = mlflow
        experiment_id = ensure_experiment(EXPERIMENT)
        self.client = mlflow.MlflowClient()
        run = self.client.create_run(experiment_id, run_name=run_name,
                                     tags={"mlflow.runName": run_name, **tags})
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])

    def finish(self, stats: list[Stat], claims: list[ClaimResult], tags: dict, artifact: str | None,
               status: str = "FINISHED") -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        metrics = []
        for s in stats:
            for key, value in ((s.name, s.mean), (f"{s.name}_band", s.band), (f"{s.name}_std", s.std)):
                if math.isfinite(value):
                    metrics.append(Metric(key, float(value), now, 0))
        for c in claims:
            if c.status != "n/a":
                metrics.append(Metric(f"claim_{c.name}_pass", float(not c.failed), now, 0))
        for i in range(0, len(metrics), 900):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 900])
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v)[:5000])
        if artifact:
            self.client.log_artifact(self.run_id, artifact)
        self.client.set_terminated(self.run_id, status=status)

    def fail(self, err: BaseException) -> None:
        if self.run_id is not None:
            self.client.set_tag(self.run_id, "error", f"{type(err).__name__}: {err}"[:4000])
            self.client.set_terminated(self.run_id, status="KILLED" if isinstance(err, KeyboardInterrupt)
                                       else "FAILED")


def run_bench(opts: BenchOptions, out=None) -> BenchResult:
    """Run the bench described by ``opts``; ``result.exit_code`` is 1 on a regression, else 0."""
    out = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    if opts.suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, got {opts.suite!r}")
    if opts.threads < 1:
        raise ValueError("threads must be >= 1")
    started = time.perf_counter()
    now = _dt.datetime.now(_dt.timezone.utc)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    s = C.suite(opts.scale)
    rounds = opts.rounds if opts.rounds is not None else s.rounds
    warmup = opts.warmup if opts.warmup is not None else s.warmup
    if rounds < 2:
        raise ValueError("rounds must be >= 2 (a noise band needs repeats)")
    known = {c.name for c in s.speed} | {c.name for c in s.quality}
    unknown = set(opts.cases) - known
    if unknown:
        raise ValueError(f"unknown case(s) {sorted(unknown)}; known: {sorted(known)}")
    speed_cases = select_speed_cases(s.speed, opts.cases) if opts.suite in ("speed", "all") else []
    quality_cases = [c for c in s.quality if not opts.cases or c.name in opts.cases or c.name == "vanilla"] \
        if opts.suite in ("quality", "all") else []
    clock = opts.clock or ("cpu" if opts.device == "cpu" else "wall")
    opts = replace(opts, clock=clock)
    conditions = {"threads": opts.threads, "engine": opts.engine, "device": opts.device, "clock": clock}
    host = {"host": socket.gethostname(), "cpus": os.cpu_count(), "torch": torch.__version__}
    git = _git_commit()
    params = {"suite": opts.suite, "scale": opts.scale, "rounds": rounds, "warmup": warmup, **conditions,
              **host, "git_commit": git, "baseline": opts.baseline, "cases": ",".join(
                  c.name for c in [*speed_cases, *quality_cases])}

    say(f"DTR platform bench: suite {opts.suite}, scale {opts.scale}, device {opts.device}, "
        f"{opts.threads} thread(s), git {git}, host {host['host']} ({host['cpus']} CPUs, torch {host['torch']})")
    if speed_cases:
        say(f"  training steps via {ENGINE_TEXT[opts.engine]}")
    tracker = _Mlflow(opts.mlflow, f"bench-{opts.suite}-{opts.scale}-{stamp}", params,
                      {"bench.kind": "invocation", "bench.suite": opts.suite, "bench.scale": opts.scale})
    threads_before = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    blas = _blas_threads(opts.threads)
    result = BenchResult()
    contention = math.nan
    try:
        stats = []
        if speed_cases:
            say("speed cases:")
            timings = measure_speed(speed_cases, opts, rounds, warmup, clock, say)
            stats += speed_stats(speed_cases, timings.rounds, conditions)
            contention = timings.contention
        if quality_cases:
            say("quality cases (trainers.train.train per seed):")
            fids = measure_quality(quality_cases, opts, stamp, tracker.run_id, say)
            stats += quality_stats(quality_cases, fids, {"threads": opts.threads, "device": opts.device})
        result = judge(stats, opts, speed_cases)
        wall = time.perf_counter() - started
        print_report(result, opts, say, wall)
        record = {"time": now.isoformat(), "run_id": tracker.run_id or uuid.uuid4().hex, "wall_s": wall,
                  "suite": opts.suite, "scale": opts.scale, "rounds": rounds, "warmup": warmup,
                  "git_commit": git, **host, **conditions, "contention": contention,
                  "result": "regression" if result.exit_code else "ok",
                  "metrics": {st.name: {**st.summary(), **_verdict_fields(v)}
                              for st, v in zip(result.stats, result.verdicts)},
                  "claims": [c.__dict__ for c in result.claims]}
        record = _json_safe(record)
        result.record = record
        hist = append_history(record, opts.history or history_path())
        artifact = opts.json_out or os.path.join(os.path.dirname(hist), f"bench-{stamp}.json")
        with open(artifact, "w") as f:
            json.dump(record, f, indent=1)
        tracker.finish(result.stats, result.claims,
                       {"bench.result": record["result"], "bench.git_commit": git,
                        "bench.regressions": ",".join(v.name for v in result.verdicts if v.regressed) or "none"},
                       artifact)
        if opts.update_baseline:
            baseline = Baseline.load(opts.baseline)
            baseline.update(opts.scale, result.stats, {"time": now.isoformat(), "git_commit": git, "rounds": rounds,
                                                       **host, **conditions})
            baseline.save()
            say(f"baseline updated: {opts.baseline} (scale {opts.scale}, {len(result.stats)} metrics); exit 0")
            result.exit_code = 0
        say(f"history: {hist}   result JSON: {artifact}" + (f"   MLflow run {tracker.run_id} in experiment "
                                                             f"'{EXPERIMENT}'" if tracker.run_id else ""))
    except BaseException as err:
        tracker.fail(err)
        raise
    finally:
        torch.set_num_threads(threads_before)
        blas.__exit__(None, None, None)
    return result


def _blas_threads(n: int):
    """Hold numpy/scipy's BLAS to ``n`` threads too (FID's covariance and sqrtm), when threadpoolctl
    is installed; idle BLAS threads spinning would otherwise be billed to the CPU clock."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib
        return contextlib.nullcontext()
    import numpy  # noqa: F401 -- limits only reach BLAS libraries already loaded
    import scipy.linalg  # noqa: F401 -- scipy ships its own OpenBLAS (FID's sqrtm)
    return threadpool_limits(limits=n)


def _json_safe(obj):
    """Plain JSON: NaN/inf become null, tuples lists, anything else unknown its str()."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def _verdict_fields(v: Verdict) -> dict:
    d = verdict_dict(v)
    return {"status": d["status"], "base_mean": d["base_mean"], "allowed": d["allowed"], "note": d["note"]}


def judge(stats: list[Stat], opts: BenchOptions, speed_cases) -> BenchResult:
    baseline = Baseline.load(opts.baseline)
    verdicts = [compare(st, baseline.entry(opts.scale, st.name), gate_absolute=opts.gate_absolute) for st in stats]
    claims = []
    train_models = {c.model for c in speed_cases if isinstance(c, C.TrainStepCase)}
    applicable = train_models == {"DiT-S/2"} and opts.device == "cpu"
    why_not = f"the claim is about DiT-S/2 on CPU; this run: {', '.join(sorted(train_models))} on {opts.device}"
    by_name = {st.name: st for st in stats}
    for name in ("dtr_step_ratio", "rtr_step_ratio"):
        if name in by_name:
            claims.append(claim_check(by_name[name], CLAIM_LIMIT, applicable, "" if applicable else why_not))
    failed = any(v.regressed for v in verdicts) or any(c.failed for c in claims)
    return BenchResult(stats, verdicts, claims, 1 if failed else 0)


# --- printing -----------------------------------------------------------------------------------

def _fmt(value: float, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "ms":
        return f"{value:.1f}" if value < 1000 else f"{value:.0f}"
    if unit == "FID":
        return f"{value:.2f}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _pm(mean: float, band: float, unit: str) -> str:
    return f"{_fmt(mean, unit)} ± {_fmt(band, unit)}" if math.isfinite(band) else _fmt(mean, unit)


def format_table(result: BenchResult) -> str:
    head = ("metric", "unit", "this run (mean ± band)", "n", "baseline (mean ± band)", "change", "allowed", "status")
    rows = []
    for st, v in zip(result.stats, result.verdicts):
        change = f"{v.rel_change:+.1%}" if math.isfinite(v.rel_change) else "-"
        allowed = f"+{_fmt(v.allowed, st.unit)}" if math.isfinite(v.allowed) else "-"
        rows.append((st.name, st.unit, _pm(v.mean, v.band, st.unit), str(st.n), _pm(v.base_mean, v.base_band, st.unit),
                     change, allowed, v.status + (f" ({v.note})" if v.note and v.status != "ok" else "")))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in [head, *rows]]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def print_report(result: BenchResult, opts: BenchOptions, say, wall: float) -> None:
    say()
    say(format_table(result))
    say("  band = t-quantile(0.99865) x standard error of the rounds/seeds; 'allowed' = how far the mean may "
        "rise above the baseline (Welch band of both);")
    if any(st.unit == "ms" for st in result.stats):
        say(f"  ms = {opts.clock}-clock time per unit, fastest of each round; absolute times ('info') are reported, "
            + ("and gated (--gate-absolute)" if opts.gate_absolute else "not gated; ratios are gated"))
    by_name = {st.name: st for st in result.stats}
    step_ratios = [st for st in result.stats if st.name.endswith("_step_ratio")]
    if step_ratios:
        say()
        say("step-time overhead vs vanilla (same rounds): " + ", ".join(
            f"{C.ROUTED.get(st.name[:-len('_step_ratio')], st.name)} {st.mean - 1:+.2%} (± {st.band:.2%})"
            for st in step_ratios))
    if result.claims:
        say(f"claim: routing (DTR, R-TR) adds <= {CLAIM_LIMIT - 1:.0%} step time at DiT-S/2 on CPU "
            "(paper App. E: DiT-S 8.19 -> 8.14 it/s); a FAIL counts as a regression only beyond the noise band")
        for c in result.claims:
            label = C.ROUTED.get(c.name[:-len("_step_ratio")], c.name)
            say(f"  {label:<5} ratio {_pm(c.mean, c.band, 'x')} ({c.mean - 1:+.2%})  {c.status}"
                + (f": {c.note}" if c.note else ""))
    regressed = [v for v in result.verdicts if v.status == REGRESSION]
    faster = [v for v in result.verdicts if v.status == FASTER]
    say()
    if faster:
        say("better than baseline (consider --update-baseline): " + ", ".join(v.name for v in faster))
    if result.exit_code:
        what = [f"{v.name} {_fmt(v.mean, by_name[v.name].unit)} vs baseline {_fmt(v.base_mean, by_name[v.name].unit)} "
                f"(allowed +{_fmt(v.allowed, by_name[v.name].unit)})" for v in regressed]
        what += [f"claim {c.name} FAIL" for c in result.claims if c.failed]
        code = "exit 0 (--update-baseline)" if opts.update_baseline else "exit 1"
        say(f"RESULT: REGRESSION -> {code}: " + "; ".join(what))
    else:
        say("RESULT: OK (no regression beyond the noise bands) -> exit 0")
    say(f"bench wall time: {wall:.0f}s")
