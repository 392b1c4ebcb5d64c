"""No secrets in records (issue 15): fake credentials put into the environment of a real sweep must
not appear in anything the platform records: MLflow params, tags, metric names and artifacts, the
run and sweep directories (Tune's experiment state and pickles included, gzip opened), the MLflow
store, and the logs the driver prints.

``FAKE_SECRETS`` go into the environment of the sweep's drivers in tests/test_search.py
(test_killed_trial_and_killed_driver_resume: a preempted trial, a killed driver, a resume), so the
records of retries and restores are scanned too.
"""
from __future__ import annotations

import gzip
import os

FAKE_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKE0DTR0TEST0ID",
    "AWS_SECRET_ACCESS_KEY": "fake-aws-secret-0d7r-9c4e-leak-check",
    "MLFLOW_TRACKING_PASSWORD": "fake-mlflow-password-0d7r-51a2",
    "HF_TOKEN": "hf_fake0d7r0token0b83leakcheck",
    "RAY_AUTH_TOKEN": "0d7ec0de" * 8,
}


def _found(data: bytes) -> list[str]:
    return [name for name, value in FAKE_SECRETS.items() if value.encode() in data]


def scan_tree(root) -> list[str]:
    """``path: NAME`` for every file under ``root`` (or ``root`` itself) holding a fake secret's value."""
    root = str(root)
    files = [root] if os.path.isfile(root) else [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
    leaks = []
    for path in files:
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as fh:
            data = fh.read()
        if path.endswith(".gz"):
            try:
                data += gzip.decompress(data)
            except OSError:
                pass
        leaks += [f"{path}: {name}" for name in _found(data)]
    return leaks


def scan_mlflow(client, run_ids, download_dir) -> list[str]:
    """Params, tags (keys and values), metric names and downloaded artifacts of MLflow runs."""
    leaks = []
    for run_id in run_ids:
        data = client.get_run(run_id).data
        fields = {"params": data.params, "tags": data.tags, "metrics": {k: "" for k in data.metrics}}
        for kind, items in fields.items():
            for key, value in items.items():
                leaks += [f"run {run_id} {kind} {key}: {name}" for name in _found(f"{key}={value}".encode())]
        target = os.path.join(str(download_dir), run_id)
        os.makedirs(target, exist_ok=True)
        if client.list_artifacts(run_id):
            leaks += scan_tree(client.download_artifacts(run_id, "", target))
    return leaks


def check_no_secrets(paths, texts: dict[str, str], client, run_ids, download_dir) -> int:
    """Assert that no fake secret is in ``paths`` (files or directories), ``texts`` (name -> log text)
    or the MLflow runs; returns the number of files scanned (so a caller can see it looked)."""
    leaks = []
    for path in paths:
        leaks += scan_tree(path)
    for name, text in texts.items():
        leaks += [f"{name}: {secret}" for secret in _found(text.encode())]
    leaks += scan_mlflow(client, run_ids, download_dir)
    assert not leaks, "secrets in records:\n" + "\n".join(leaks)
    return sum(len(fs) for p in paths for _, _, fs in os.walk(str(p))) + sum(os.path.isfile(str(p)) for p in paths)
