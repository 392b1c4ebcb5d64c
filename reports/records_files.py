"""One trial directory ``<sweep_dir>/trials/<name>/`` as records: its config, final metrics,
per-step curves and the files a report shows (sample grid, mask image, expert usage).

The config is the one the run recorded: ``config.json`` (written when training starts),
else ``metrics.json``'s ``"config"``, else the newest complete checkpoint's ``config.json``;
a trial that recorded none has none.  Every reader tolerates missing or half-written files.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os

import polars as pl

from reports.schema import (
    ARTIFACT_FILES,
    CURVE_SCHEMA,
    EXPERT_USAGE_FILES,
    METRICS,
    config_row,
    number,
    trial_id_of,
)
from trainers.files import read_jsonl
from trainers.training.tracking import RUN_CONFIG_FILE


def read_json(path: str):
    """The JSON value in ``path``, or None when it is missing or does not parse."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


SETTINGS_FILE = "sweep.json"  # the sweep's settings (platform/sweep.py writes it): objectives, trials, seed


def read_settings(sweep_dir: str) -> dict:
    """The sweep's saved settings ({} for a sweep older than the file, or none)."""
    settings = read_json(os.path.join(sweep_dir, SETTINGS_FILE))
    return settings if isinstance(settings, dict) else {}


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def run_config(run_dir: str, final: dict | None = None) -> dict:
    """The run's recorded config ({} when it recorded none yet)."""
    config = read_json(os.path.join(run_dir, RUN_CONFIG_FILE))
    if not isinstance(config, dict):
        config = (final or {}).get("config")
    if not isinstance(config, dict):
        from trainers.training.checkpoint import latest_checkpoint
        latest = latest_checkpoint(run_dir)
        config = read_json(os.path.join(latest, "config.json")) if latest else None
    return config if isinstance(config, dict) else {}


def median_throughput(records: list[dict]) -> float | None:
    """Median images/s over the logged steps, the first (warm-up) record excluded."""
    values = sorted(v for r in records[1:] if (v := number(r.get("images_per_s"))) is not None)
    return values[len(values) // 2] if values else None


def read_trial_dir(run_dir: str) -> tuple[dict, list[dict], dict]:
    """(row, curve rows, config) of one trial directory; missing files give missing values.
    A trial with final metrics is ``finished`` here; Tune's state may say otherwise."""
    name = os.path.basename(os.path.normpath(run_dir))
    final = read_json(os.path.join(run_dir, "metrics.json"))
    final = final if isinstance(final, dict) else {}
    config = run_config(run_dir, final)
    records = [r for r in read_jsonl(os.path.join(run_dir, "metrics.jsonl"), skip_bad=True) if isinstance(r, dict)]
    steps = [s for r in records if (s := number(r.get("step"), int)) is not None]
    fid_k = [r for r in records if number(r.get("fid_k")) is not None]
    row = {**config_row(config), "name": name, "trial": trial_id_of(name), "run_dir": os.path.abspath(run_dir),
           "source": "files", "step": max(steps) if steps else None,
           "fid_k": fid_k[-1]["fid_k"] if fid_k else None,
           "feature_set": final.get("feature_set") or (fid_k[-1].get("feature_set") if fid_k else None),
           "fid_protocol": final.get("fid_protocol"),
           "images_per_s": median_throughput(records),
           "mlflow_run_id": _read_text(os.path.join(run_dir, "mlflow_run_id")),
           **{m: final.get(m) for m in (*METRICS, "num_samples")}}
    row["phase"] = row["phase"] or ("baselines" if name.startswith("baseline-") else "search")
    row["label"] = final.get("label") or row["label"]
    if final:
        row["status"] = "finished"
        row["step"] = max(row["step"] or 0, number(config.get("steps"), int) or 0) or row["step"]
    for key, filename in (("samples_png", "samples.png"), ("routing_mask_png", "routing_mask.png")):
        path = os.path.join(run_dir, filename)
        row[key] = path if os.path.exists(path) else None
    row["expert_usage"] = next((p for f in EXPERT_USAGE_FILES if os.path.exists(p := os.path.join(run_dir, f))), None)
    curves = [{"name": name, **{k: r.get(k) for k in CURVE_SCHEMA if k != "name"}}
              for r in records if number(r.get("step"), int) is not None]
    return row, curves, config


def trial_dirs(sweep_dir: str) -> list[str]:
    """The sweep's trial directories, sorted by name."""
    return [d for d in sorted(glob.glob(os.path.join(sweep_dir, "trials", "*"))) if os.path.isdir(d)]


def worker_alive(run_dir: str) -> bool:
    """Whether the process in ``<run_dir>/worker.pid`` is alive (on this machine)."""
    pid = number(_read_text(os.path.join(run_dir, "worker.pid")), int)
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def csv_statuses(sweep_dir: str) -> dict[str, str]:
    """Trial id -> status of the sweep's last saved ``trials.csv`` (empty without one)."""
    try:
        table = pl.read_csv(os.path.join(sweep_dir, "trials.csv"), infer_schema_length=0)
    except Exception:
        return {}
    if "trial" not in table.columns or "status" not in table.columns:
        return {}
    return {str(t): str(s) for t, s in zip(table["trial"], table["status"]) if t and s}


def first_mtime(paths: list[str]) -> float | None:
    """The oldest modification time (seconds) of ``paths`` that exist."""
    times = []
    for path in paths:
        with contextlib.suppress(OSError):
            times.append(os.path.getmtime(path))
    return min(times) if times else None


def read_artifacts(trials: pl.DataFrame) -> dict[str, dict[str, bytes]]:
    """Trial name -> {file name: bytes} of the ARTIFACT_FILES in each trial's run directory."""
    out: dict[str, dict[str, bytes]] = {}
    for name, run_dir in zip(trials["name"].to_list(), trials["run_dir"].to_list()):
        for filename in ARTIFACT_FILES if run_dir else ():
            with contextlib.suppress(OSError), open(os.path.join(run_dir, filename), "rb") as f:
                out.setdefault(name, {})[filename] = f.read()
    return out
