"""``python -m platform.bench``: the regression benchmark (speed ratios, FID-k), gated against
the committed baseline.  Run from the repository root.

    make bench                                            # = python -m platform.bench --suite speed
    python -m platform.bench --suite all                  # + FID-k of vanilla/DTR, 3 seeds (long)
    python -m platform.bench --suite speed --update-baseline   # re-record platform/bench/baseline.json
    python -m platform.bench --suite gpu                  # bf16 DiT-B/2, DiT-L/2 img/s, MFU, DTR ratio (1 GPU)
    python -m platform.bench --suite faults               # preemption, MLflow outage, 200-trial sweep, tracking stores

This module is only the command line around :func:`platform.bench.run.run_bench`; the modules
are listed in platform/bench/__init__.py, the cases and the timing live in trainers/bench.
"""
from __future__ import annotations

import argparse
import sys
import traceback

EPILOG = """\
exit status:
  0  no metric regressed beyond its noise band (or --update-baseline was given)
  1  a gated metric regressed beyond its noise band, or the routing-cost claim failed beyond its band
  2  bad arguments or the bench could not run
  --suite gpu: 0 every target passed, 1 a target failed (MFU of DiT-B/2 >= 40 %, DTR/vanilla step time
  <= 1.01), 2 no CUDA device (use --device cpu --tiny for the smoke path) or a crash
  --suite faults: 0 every case ran and passed (preemption: exit within 30 s of SIGTERM), 1 a target failed,
  2 a case could not run (e.g. no PostgreSQL for the tracking case: one line each)

gated metrics are ratios measured in the same interleaved rounds (dtr_step_ratio = t_dtr / t_vanilla,
laptop_precision_step_ratio = t(bf16 autocast) / t(fp32), ...); absolute numbers (milliseconds, start-up
seconds, images/s, model FLOP/s, MFU) are printed and logged but only gated with --gate-absolute.

testing the gate (no production hook needed): write a baseline file whose entry claims a case was much
faster with a tight band, then run with --baseline PATH, e.g.
  python -m platform.bench --scale tiny --rounds 5 --update-baseline --baseline /tmp/b.json --no-mlflow
  (edit /tmp/b.json: scales.tiny.metrics.dtr_step_ratio.mean = 0.1, se = 0.001)
  python -m platform.bench --scale tiny --rounds 5 --baseline /tmp/b.json --no-mlflow   # exits 1

results: one MLflow run per invocation in experiment 'benchmarks' ($MLFLOW_TRACKING_URI or
runs/mlflow.db), a line in runs/bench/history.jsonl (reports.bench_history.history_rows makes it a frame).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m platform.bench", description=__doc__.split("\n\n")[0],
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=("speed", "quality", "all", "gpu", "faults"), default="speed",
                   help="speed: step-time ratios, sampling and FID time (minutes); quality: FID-k of "
                        "vanilla and DTR after short training runs, 3 seeds (long); all: both; gpu: bf16 "
                        "training img/s, MFU against a GEMM peak, DTR/vanilla step time and sampling img/s of "
                        "DiT-B/2 and DiT-L/2 on one GPU (< 5 min; needs only torch and numpy); faults: SIGTERM "
                        "-> checkpoint time, an MLflow outage mid-sweep, a 200-trial sweep's driver overhead and journal, MLflow stores under "
                        "8/32 writers (--cases preemption,outage,sweep,tracking; platform/bench/faults.py)")
    p.add_argument("--scale", choices=("full", "tiny"), default="full",
                   help="full: the real suite (DiT-S/2 training steps; gpu: DiT-B/2, DiT-L/2); tiny: test size "
                        "(DiT-T/4, a few images)")
    p.add_argument("--tiny", dest="scale", action="store_const", const="tiny", help="same as --scale tiny")
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default: full 12, tiny 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up passes (default 1)")
    p.add_argument("--cases", default="",
                   help="comma-separated subset of cases, each with the cases it is measured with (calib and "
                        "vanilla for dtr, rtr, switch, sample, fid; laptop, laptop_fp32|laptop_auto and peak "
                        "together), e.g. dtr,rtr or laptop,startup,dsinit; default all but dsinit_jit (DeepSpeed's "
                        "own init with its JIT build, ~1.5 min: only when named)")
    p.add_argument("--seeds", default="", help="quality seeds, comma-separated (default 0,1,2)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: stable on a shared machine; part of each case's fingerprint)")
    p.add_argument("--engine", choices=("deepspeed", "torch"), default=None,
                   help="training-step path: a DeepSpeed engine as trainers/training/loop.py (default) or the "
                        "same objective with torch AdamW and no DeepSpeed; gpu suite: torch AdamW (default), "
                        "deepspeed also times a DeepSpeed bf16 engine step (skipped with a note without deepspeed)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where the cases run (default cpu; cuda: wall clock with synchronisation; not exercised "
                        "on the CPU-only build machines); the routing-cost claim is judged on cpu only; gpu suite: "
                        "default cuda, cpu only with --tiny as a smoke test")
    p.add_argument("--batch", type=int, default=None, help="gpu suite: training micro-batch (default 32; tiny 4)")
    p.add_argument("--compile", action="store_true", help="gpu suite: torch.compile the models (off by default)")
    p.add_argument("--clock", choices=("cpu", "wall"), default=None,
                   help="cpu: process CPU time (default on CPU: robust to other jobs sharing the cores); "
                        "wall: wall time (default on CUDA)")
    p.add_argument("--baseline", default=None, help="baseline file (default platform/bench/baseline.json)")
    p.add_argument("--update-baseline", action="store_true",
                   help="write this run's numbers into the baseline file (only its metrics are replaced)")
    p.add_argument("--gate-absolute", action="store_true",
                   help="also gate absolute milliseconds (only meaningful on the baseline's machine)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--history", default=None, help="history file (default runs/bench/history.jsonl)")
    p.add_argument("--json", dest="json_out", default=None, help="write the result record here (default runs/bench/bench-<UTC time>.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.suite == "gpu":  # before anything of the other suites is imported: torch and numpy only
        from platform.bench.gpu import run_gpu_suite
        return run_gpu_suite(args)
    if args.suite == "faults":  # its own cases and record (platform/bench/faults.py)
        from platform.bench.faults import run_faults_suite
        return run_faults_suite(args)
    from platform.bench.options import DEFAULT_BASELINE, BenchOptions
    from platform.bench.run import run_bench
    try:
        opts = BenchOptions(
            suite=args.suite, scale=args.scale, rounds=args.rounds, warmup=args.warmup,
            cases=tuple(c.strip() for c in args.cases.split(",") if c.strip()),
            seeds=tuple(int(s) for s in args.seeds.split(",") if s.strip()),
            threads=args.threads, engine=args.engine or "deepspeed", device=args.device or "cpu", clock=args.clock,
            baseline=args.baseline or DEFAULT_BASELINE, update_baseline=args.update_baseline,
            gate_absolute=args.gate_absolute, mlflow=not args.no_mlflow, history=args.history,
            json_out=args.json_out)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return run_bench(opts).exit_code
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 -- exit 1 means "regression", so a crash must not exit 1
        traceback.print_exc()
        return 2
