"""One writer process of the tracking-store bench: logs to an MLflow server the way a trial does
(trainers/training/tracking.py) and times every request.

    python -m platform.bench.tracking_writer URI EXPERIMENT_ID STEPS GO_FILE OUT_FILE

A run with a trial's tags, ~60 params and the config tag, then per step one batch of 10 metrics
(a trial's loss, mse, vb, throughput, ... record), FID-k and a tag every 10 steps, the final metrics and
the end status.  It waits for GO_FILE to exist first, so all writers start together after their
imports.  MLflow's own HTTP retries are off (MLFLOW_HTTP_REQUEST_MAX_RETRIES=0, set by the bench),
so a failed request is counted, not hidden as latency.  OUT_FILE gets one JSON line per request:
``[kind, seconds, error or null]``.
"""
from __future__ import annotations

import json
import os
import sys
import time

STEP_METRICS = ("loss", "mse", "vb", "images_per_s", "wall_s", "model_flops_per_s", "mfu", "peak_memory_mb",
                "epoch", "lr")
FINAL_METRICS = ("fid", "is_mean", "precision", "recall", "fid_k", "sample_seconds", "metric_seconds", "images_per_s")


def _trial_params(index: int) -> dict:
    params = {f"field_{i:02d}": f"value-{i}-{index}" for i in range(56)}
    params.update(beta=str(0.5 + index % 10 / 20), routing="dtr", model="DiT-T/4", steps="200")
    return params


def main(argv: list[str]) -> int:
    uri, experiment_id, steps, go_file, out_file = argv[0], argv[1], int(argv[2]), argv[3], argv[4]
    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    client = mlflow.MlflowClient(tracking_uri=uri)
    index = os.getpid()
    records = []

    def timed(kind: str, fn, *args, **kwargs):
        started = time.perf_counter()
        try:
            out = fn(*args, **kwargs)
            records.append([kind, time.perf_counter() - started, None])
            return out
        except Exception as err:  # noqa: BLE001 -- counted, the writer goes on like a trial's sender
            records.append([kind, time.perf_counter() - started, f"{type(err).__name__}: {str(err)[:1000]}"])
            return None

    while not os.path.exists(go_file):
        time.sleep(0.01)
    run = timed("create_run", client.create_run, experiment_id, run_name=f"writer-{index}",
                tags={"method": "DTR", "phase": "search", "space": "bench"})
    if run is None:
        _write(out_file, records)
        return 0
    run_id = run.info.run_id
    config = json.dumps(_trial_params(index))
    timed("log_params", client.log_batch, run_id,
          params=[Param(k, v) for k, v in _trial_params(index).items()],
          tags=[RunTag("dtr.config", config), RunTag("mlflow.source.git.commit", "0" * 40)])
    for step in range(1, steps + 1):
        now = int(time.time() * 1000)
        timed("log_metrics", client.log_batch, run_id,
              metrics=[Metric(k, float(step) / (i + 1), now, step) for i, k in enumerate(STEP_METRICS)])
        if step % 10 == 0:
            timed("log_metrics", client.log_batch, run_id, metrics=[Metric("fid_k", 100.0 / step, now, step)])
            timed("set_tag", client.set_tag, run_id, "last_checkpoint", f"step_{step:07d}")
    now = int(time.time() * 1000)
    timed("log_metrics", client.log_batch, run_id, metrics=[Metric(k, 1.0, now, steps) for k in FINAL_METRICS])
    timed("set_terminated", client.set_terminated, run_id, "FINISHED")
    _write(out_file, records)
    return 0


def _write(path: str, records: list) -> None:
    with open(path, "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
