"""Tracking-store case of ``--suite faults``: N writer processes, each logging like a trial
(platform/bench/tracking_writer.py), against an ``mlflow server`` on loopback backed by sqlite, by
PostgreSQL, and by PostgreSQL behind MLflow's basic-auth app (what ray_cluster.yaml runs on the head).

Per store and writer count: every request's latency (p50, p95, p99, max over all requests and per
kind), the failed requests (MLflow's client retries off, so none is hidden), the run's wall time and
the writes per second.  The server is ``mlflow server --workers 4`` (its default), artifacts in a
temporary directory.  Without PostgreSQL (server binaries or psycopg2) its stores are skipped with
one line saying why (platform/bench/postgres.py).
"""
from __future__ import annotations

import json
import math
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from trainers.paths import PROJECT_ROOT
from trainers.training.distributed import free_port

STORES = ("sqlite", "postgresql", "postgresql+auth")


def percentiles(values: list[float]) -> dict:
    """p50/p95/p99/max in milliseconds (nearest-rank)."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(q: float) -> float:  # the smallest value with at least q of them at or below it
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000
    return {"p50_ms": rank(0.50), "p95_ms": rank(0.95), "p99_ms": rank(0.99), "max_ms": ordered[-1] * 1000}


def _wait_healthy(url: str, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"mlflow server at {url} did not answer /health within {timeout:.0f} s")


def start_server(backend: str, workdir: str, auth: dict | None, port: int | None = None, workers: int = 4,
                 timeout: float = 120):
    """Start ``mlflow server`` on 127.0.0.1 (``port``, or a free one) with ``workers`` uvicorn
    workers and wait (up to ``timeout`` s) for /health; (process, url)."""
    port = port or free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")},
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # as on the cluster's head
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend, "--default-artifact-root",
           os.path.join(workdir, "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    if auth:
        ini = os.path.join(workdir, "basic_auth.ini")
        with open(ini, "w") as fh:
            fh.write(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = {auth['database_uri']}\n"
                     "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                     "auth_cache_ttl_seconds = 60\n")  # as ray_cluster.yaml: one PBKDF2 check per worker a minute
        env.update(MLFLOW_AUTH_CONFIG_PATH=ini, MLFLOW_AUTH_ADMIN_USERNAME=auth["user"],
                   MLFLOW_AUTH_ADMIN_PASSWORD=auth["password"], MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16))
        cmd += ["--app-name", "basic-auth"]
    log = open(os.path.join(workdir, "server.log"), "a")  # a restarted server appends
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, timeout)
    except Exception as err:
        stop_server(proc)
        log.close()
        with open(os.path.join(workdir, "server.log")) as fh:
            tail = fh.read().strip().splitlines()[-1:]
        raise RuntimeError(f"{err}: {tail}") from None
    return proc, url


def stop_server(proc) -> None:
    """The server and its uvicorn workers (their own process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=30)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _unauthenticated_status(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def run_writers(url: str, writers: int, steps: int, workdir: str, credentials: dict | None) -> dict:
    """Start ``writers`` writer processes, let them go together, collect their request records."""
    import mlflow
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")},
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "300", "PYTHONPATH": PROJECT_ROOT,
           # MLflow's usage telemetry off (a cluster without internet has no use for it): with it on, a race in
           # its session id failed 2 of 3968 client requests at 32 writers, whatever the store
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    if credentials:
        env.update(MLFLOW_TRACKING_USERNAME=credentials["user"], MLFLOW_TRACKING_PASSWORD=credentials["password"])
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update({k: env[k] for k in saved if k in env})
    try:
        experiment = mlflow.MlflowClient(tracking_uri=url).create_experiment(f"bench-{writers}-{time.time_ns()}")
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    go = os.path.join(workdir, f"go-{writers}")
    outs = [os.path.join(workdir, f"writer-{writers}-{i}.jsonl") for i in range(writers)]
    procs = [subprocess.Popen([sys.executable, "-m", "platform.bench.tracking_writer", url, experiment, str(steps),
                               go, out], cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for out in outs]
    time.sleep(min(60.0, 2.0 + 1.0 * writers))  # their imports (mlflow: ~1-2 CPU-seconds each)
    started = time.perf_counter()
    open(go, "w").close()
    crashed = []
    for p in procs:
        _, err = p.communicate(timeout=1800)
        if p.returncode != 0:
            crashed.append(err.strip().splitlines()[-1:] or [f"exit {p.returncode}"])
    wall = time.perf_counter() - started
    records = []
    for out in outs:
        if os.path.exists(out):
            with open(out) as fh:
                records += [json.loads(line) for line in fh]
    return summarise(records, wall, writers, crashed)


def summarise(records: list, wall: float, writers: int, crashed: list) -> dict:
    """Latency percentiles (all requests and per kind), errors by message, requests per second."""
    ok = [r for r in records if r[2] is None]
    errors: dict[str, int] = {}
    for r in records:
        if r[2] is not None:  # the exception's type and the end of its message (the cause: "Read timed out", ...)
            text = " ".join(r[2].split())
            key = text if len(text) <= 200 else f"{text.split(':')[0]}: ...{text[-160:]}"
            errors[key] = errors.get(key, 0) + 1
    kinds = sorted({r[0] for r in records})
    return {"writers": writers, "requests": len(records), "failed": len(records) - len(ok), "errors": errors,
            "crashed_writers": len(crashed), "wall_s": wall, "requests_per_s": len(records) / wall if wall else 0.0,
            "latency": percentiles([r[1] for r in ok]),
            "mean_ms": statistics.fmean(r[1] for r in ok) * 1000 if ok else None,
            "by_kind": {k: percentiles([r[1] for r in ok if r[0] == k]) for k in kinds}}


def measure_store(store: str, writer_counts: tuple[int, ...], steps: int, say) -> dict:
    """One store: a fresh server (and database) per writer count.  Raises PostgresUnavailable for the
    PostgreSQL stores when no server can be started."""
    from platform.bench.postgres import TempPostgres, check_available
    if store.startswith("postgresql"):
        check_available()
    results = {}
    for writers in writer_counts:
        with tempfile.TemporaryDirectory(prefix="dtr-bench-tracking-") as workdir:
            pg = TempPostgres(free_port()).__enter__() if store.startswith("postgresql") else None
            try:
                backend = pg.create_database("mlflow") if pg else f"sqlite:///{os.path.join(workdir, 'mlflow.db')}"
                auth = None
                if store.endswith("+auth"):
                    auth = {"user": "bench-admin", "password": secrets.token_hex(16),
                            "database_uri": pg.create_database("mlflow_auth")}
                proc, url = start_server(backend, workdir, auth)
                try:
                    result = run_writers(url, writers, steps, workdir, auth)
                    if auth:
                        result["unauthenticated_status"] = _unauthenticated_status(url)
                finally:
                    stop_server(proc)
            finally:
                if pg is not None:
                    pg.__exit__(None, None, None)
        lat = result["latency"]
        say(f"  {store:<16} {writers:>3} writers: {result['requests']} requests in {result['wall_s']:.1f} s "
            f"({result['requests_per_s']:.0f}/s), failed {result['failed']}, latency p50 {lat.get('p50_ms', 0):.0f} "
            f"p95 {lat.get('p95_ms', 0):.0f} p99 {lat.get('p99_ms', 0):.0f} max {lat.get('max_ms', 0):.0f} ms"
            + (f"; without credentials: HTTP {result['unauthenticated_status']}" if auth else ""))
        for message, count in result["errors"].items():
            say(f"      {count} x {message}")
        results[str(writers)] = result
    return results
