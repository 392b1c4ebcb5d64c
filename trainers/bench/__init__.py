"""Scheduled regression benchmarks: a fixed suite of named cases, timed interleaved, gated
against a committed baseline with noise bands from the repeats (no hand-picked tolerances).

    make bench                                     # speed suite, ~3-5 min on 2 CPU cores
    python -m platform.bench --suite all           # + quality: FID-k of vanilla and DTR, 3 seeds
    python -m platform.bench --update-baseline     # re-record trainers/bench/baseline.json

Modules: ``cases`` (the suite), ``measure`` (runners, interleaved timing), ``gate`` (bands,
baseline comparison, the <= 2% routing-cost claim), ``history`` (runs/bench/history.jsonl and
``bench_history() -> polars.DataFrame`` for trend plots), ``run`` (one invocation: measure,
judge, print, log to MLflow experiment ``benchmarks``).  Exit status: 0 ok, 1 regression,
2 could not run.

Scheduling (all run from the repository root; ``platform`` shadows a stdlib module there):

* GitHub Actions: ``.github/workflows/bench.yml`` (nightly speed suite, weekly quality suite).
* systemd: ``trainers/bench/schedule/dtr-bench.{service,timer}``::

      sudo cp trainers/bench/schedule/dtr-bench.* /etc/systemd/system/   # edit WorkingDirectory first
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
