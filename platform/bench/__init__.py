"""``python -m platform.bench``: the scheduled regression benchmark, the driver side.

A fixed suite of named cases is timed interleaved and gated against a committed baseline
with noise bands from the repeats (no hand-picked tolerances)::

    make bench                                     # = python -m platform.bench --suite speed (~3-5 min, 2 cores)
    python -m platform.bench --cases laptop,startup,dsinit     # only the MFU and start-up numbers
    python -m platform.bench --cases dsinit_jit    # DeepSpeed's own init_distributed (JIT build, ~1.5 min)
    python -m platform.bench --suite quality       # FID-k of vanilla and DTR, 3 seeds (long)
    python -m platform.bench --suite speed --update-baseline   # re-record platform/bench/baseline.json
    python -m platform.bench --suite gpu           # one GPU: bf16 DiT img/s, MFU, DTR cost (torch + numpy only)
    python -m platform.bench --suite faults        # SIGTERM -> checkpoint, 200-trial sweep overhead, MLflow stores

What a worker would run lives in ``trainers/bench``: the cases (``cases.py``), the interleaved
timing and its runners (``measure.py``, ``steps.py``) and the fresh-process launches
(``startup.py``).  Everything else is here, one idea per module:

    cli.py        the command line (flags, exit status) around run.run_bench
    options.py    BenchOptions and what they resolve to (cases, rounds, clock, conditions)
    run.py        one invocation: measure, judge, print, log to MLflow and the history
    speed.py      the speed suite: runners timed interleaved -> ratio and absolute metrics
    efficiency.py the laptop preset's step: images/s, model FLOP/s (per core), matmul peak, MFU,
                  reduced-precision / fp32 step-time ratio
    mtl.py        the laptop preset's step with ANT's PCGrad / Nash-MTL over vanilla weighting
    processes.py  fresh processes: start-up of a training process, import deepspeed + init
    quality.py    the quality suite: trainers.training.run.train per case and seed -> FID-k
    gate.py       noise bands, the baseline comparison, the <= 2% routing-cost claim
    baseline.py   baseline.json (per scale, every metric's summary when it was recorded)
    judge.py      the verdicts of one invocation and its exit status
    printing.py   the ratio table and the summary lines
    history.py    runs/bench/history.jsonl, one line per invocation (reports.bench_history: its frame)
    provenance.py git commit and host of a run
    gpu.py        --suite gpu: trainers/bench/gpu_check.py's table and JSON (docs/benchmarks.md)
    faults.py     --suite faults: its cases, their lines and JSON record (docs/benchmarks.md, "Faults")
    preempt.py    SIGTERM -> checkpoint -> exit of a training process at the laptop / paper-sim sizes
    scale.py      a 200-trial sweep of the ``trivial`` budget: driver overhead per trial, journal size
    tracking_store.py  MLflow servers on sqlite / PostgreSQL (+ basic-auth) under 8 and 32 writers
    tracking_writer.py one writer process of that case: logs like a trial, times every request
    postgres.py   a throw-away PostgreSQL server on loopback (initdb / pg_ctl)

Exit status: 0 ok, 1 regression, 2 could not run.  Every invocation is one run in the MLflow
experiment ``benchmarks`` (trainers.training.tracking.MlflowRun) and one line of
``runs/bench/history.jsonl`` (trainers.paths.bench_history_path).

Scheduling (all run from the repository root; ``platform`` shadows a stdlib module there):

* GitHub Actions: ``.github/workflows/bench.yml`` (nightly speed suite, weekly quality suite).
* systemd: ``platform/bench/schedule/dtr-bench.{service,timer}``::

      sudo cp platform/bench/schedule/dtr-bench.* /etc/systemd/system/   # edit WorkingDirectory first
      sudo systemctl daemon-reload && sudo systemctl enable --now dtr-bench.timer
      journalctl -u dtr-bench.service      # the printed ratio tables

* cron (nightly at 03:17; ``make bench`` exits 1 on a regression, cron mails the output)::

      17 3 * * * cd /srv/dtr && MLFLOW_TRACKING_URI=http://mlflow:5000 make bench >> runs/bench/cron.log 2>&1

* on a Ray cluster, as a job on the head node (the bench is one driver process; it starts no
  Ray workers, so ``platform`` shadowing is harmless).  Use ``--device cuda`` on a GPU node, and a
  baseline recorded on that kind of node::

      ray job submit --address http://<head>:8265 --working-dir . --entrypoint-num-cpus 2 \\
          --runtime-env-json '{"excludes": ["runs", ".venv", "mlruns"],
                               "env_vars": {"MLFLOW_TRACKING_URI": "http://<mlflow>:5000"}}' \\
          -- python -m platform.bench --suite all
"""
from platform.bench.cli import build_parser, main

__all__ = ["build_parser", "main"]
