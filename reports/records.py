"""A sweep's run records as polars frames: one row per trial, one row per logged step.

Two sources, merged by trial name (the trial's directory name = its MLflow run name):

- the sweep directory: ``trials/<name>/metrics.json`` (final metrics + the full config),
  ``metrics.jsonl`` (per-step loss records and ``fid_k`` at eval steps), checkpoint
  ``config.json`` of unfinished trials, Ray Tune's ``<phase>/experiment_state-*.json``
  (trial status, error file) and ``trials.csv`` (written when a sweep ends);
- MLflow: the children (tag ``mlflow.parentRunId``) of the parent run whose id is in
  ``<sweep_dir>/mlflow_parent_run_id``; they fill in values and trials the files lack.

Every reader tolerates missing or half-written files: a partial sweep gives rows with
``status`` ``running`` / ``stopped`` / ``error`` and null metrics, never an exception.
"""
from __future__ import annotations

import contextlib
import glob
import json
import math
import os
from dataclasses import dataclass, field

import polars as pl

STATUSES = ("finished", "stopped", "error", "running")
METRICS = ("fid", "is_mean", "precision", "recall")

# RunConfig fields copied onto every trial row (the config table groups and shows them).
CONFIG_FIELDS = {
    "seed": pl.Int64, "model": pl.Utf8, "dataset": pl.Utf8, "data_root": pl.Utf8, "image_size": pl.Int64,
    "class_cond": pl.Boolean, "routing": pl.Utf8, "beta": pl.Float64, "alpha": pl.Float64,
    "routing_clusters": pl.Int64, "routing_cluster_method": pl.Utf8, "routing_seed": pl.Int64,
    "experts": pl.Int64, "top_k": pl.Int64, "prior_weight": pl.Float64, "weighting": pl.Utf8,
    "min_snr_gamma": pl.Float64, "p2_gamma": pl.Float64, "p2_k": pl.Float64, "uw_clusters": pl.Int64,
    "uw_cluster_method": pl.Utf8, "schedule": pl.Utf8, "num_timesteps": pl.Int64, "learn_sigma": pl.Boolean,
    "global_batch": pl.Int64, "lr": pl.Float64, "steps": pl.Int64, "sampler": pl.Utf8,
    "sample_steps": pl.Int64, "cfg_scale": pl.Float64, "guided_channels": pl.Int64,
    "final_eval_samples": pl.Int64, "multi_expert_n": pl.Int64,
}
TRIAL_SCHEMA = {
    "name": pl.Utf8, "trial": pl.Utf8, "phase": pl.Utf8, "baseline": pl.Utf8, "label": pl.Utf8,
    "status": pl.Utf8, "detail": pl.Utf8, **CONFIG_FIELDS,
    "step": pl.Int64, "fid": pl.Float64, "is_mean": pl.Float64, "precision": pl.Float64,
    "recall": pl.Float64, "fid_k": pl.Float64, "feature_set": pl.Utf8, "num_samples": pl.Int64,
    "images_per_s": pl.Float64, "wall_s": pl.Float64, "run_dir": pl.Utf8, "samples_png": pl.Utf8,
    "routing_mask_png": pl.Utf8, "expert_usage": pl.Utf8, "mlflow_run_id": pl.Utf8, "source": pl.Utf8,
}
CURVE_SCHEMA = {"name": pl.Utf8, "step": pl.Int64, "loss": pl.Float64, "fid_k": pl.Float64}
EXPERT_USAGE_FILES = ("expert_usage.npy", "expert_usage.json")


@dataclass
class SweepRecords:
    """Everything a report is built from."""

    sweep_dir: str
    trials: pl.DataFrame                                # TRIAL_SCHEMA, one row per trial
    curves: pl.DataFrame                                # CURVE_SCHEMA, one row per logged step
    configs: dict[str, dict] = field(default_factory=dict)  # trial name -> full config dict
    meta: dict = field(default_factory=dict)            # space, budget, parent_run_id, ...


# -- small tolerant readers ---------------------------------------------------------------------

def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _read_jsonl(path: str) -> list[dict]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        out.append(record)
    except OSError:
        pass
    return out


def _number(value, kind=float):
    """``value`` as a finite ``kind`` or None (Tune's 1e9 stand-in for a diverged FID stays 1e9)."""
    if value is None or isinstance(value, bool) and kind is not bool:
        return None
    try:
        out = kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if isinstance(out, float) and not math.isfinite(out):
        return None
    return out


def _cast(value, dtype):
    if value is None:
        return None
    if dtype == pl.Float64:
        return _number(value, float)
    if dtype == pl.Int64:
        return _number(value, int)
    if dtype == pl.Boolean:
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes")
        return bool(value)
    return str(value)


def trials_frame(rows: list[dict]) -> pl.DataFrame:
    """Rows (dicts with any subset of TRIAL_SCHEMA's keys) as a frame with exactly that schema."""
    data = {col: [_cast(r.get(col), dtype) for r in rows] for col, dtype in TRIAL_SCHEMA.items()}
    return pl.DataFrame(data, schema=TRIAL_SCHEMA)


def curves_frame(rows: list[dict]) -> pl.DataFrame:
    data = {col: [_cast(r.get(col), dtype) for r in rows] for col, dtype in CURVE_SCHEMA.items()}
    return pl.DataFrame(data, schema=CURVE_SCHEMA)


def trial_id_of(name: str) -> str:
    """Tune trial id of a trial directory name (``trial-<id>``, ``baseline-<label>-s<seed>-<id>``)."""
    return name.rsplit("-", 1)[-1]


def label_of(config: dict) -> str:
    from trainers.config import RunConfig
    try:
        known = {k: v for k, v in config.items() if k in RunConfig.__dataclass_fields__}
        return RunConfig(**known).label()
    except Exception:  # an invalid or partial config: fall back on its routing/weighting names
        return " + ".join(str(config[k]) for k in ("routing", "weighting") if config.get(k)) or "?"


def _pid_alive(run_dir: str) -> bool:
    pid = _number((open(os.path.join(run_dir, "worker.pid")).read().strip()
                   if os.path.exists(os.path.join(run_dir, "worker.pid")) else None), int)
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


# -- Ray Tune's experiment state ----------------------------------------------------------------

def tune_states(sweep_dir: str) -> dict[str, dict]:
    """Trial id -> {phase, status, done, params, error, last_result} from the newest
    ``experiment_state-*.json`` of each phase (empty when Tune left none)."""
    out: dict[str, dict] = {}
    for phase in ("baselines", "search"):
        files = sorted(glob.glob(os.path.join(sweep_dir, phase, "experiment_state-*.json")), key=os.path.getmtime)
        state = _read_json(files[-1]) if files else None
        for entry in (state or {}).get("trial_data", []):
            try:
                trial = json.loads(entry[0])
                runtime = json.loads(entry[1]) if len(entry) > 1 and isinstance(entry[1], str) else {}
            except (TypeError, ValueError, IndexError):
                continue
            trial_id = str(trial.get("trial_id", ""))
            if not trial_id:
                continue
            last = runtime.get("last_result") or {}
            logdir = os.path.join(sweep_dir, phase, trial.get("relative_logdir") or "")
            error = None
            if trial.get("status") == "ERROR":
                error = _last_error_line(os.path.join(logdir, "error.txt")) or "error"
            out[trial_id] = {"phase": phase, "status": trial.get("status"), "final": bool(last.get("final")),
                             "params": trial.get("config") or {}, "error": error, "last_result": last}
    return out


def _last_error_line(path: str) -> str | None:
    try:
        with open(path) as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return None
    return lines[-1][:300] if lines else None


def _tune_status(state: dict) -> str:
    status = state.get("status")
    if status == "ERROR":
        return "error"
    if status == "TERMINATED":
        return "finished" if state.get("final") else "stopped"
    return "running"  # RUNNING, PENDING, PAUSED


def _csv_statuses(sweep_dir: str) -> dict[str, str]:
    path = os.path.join(sweep_dir, "trials.csv")
    try:
        table = pl.read_csv(path, infer_schema_length=0)
    except Exception:
        return {}
    if "trial" not in table.columns or "status" not in table.columns:
        return {}
    return {str(t): str(s) for t, s in zip(table["trial"], table["status"]) if t and s}


# -- the trial directories ----------------------------------------------------------------------

def _checkpoint_config(run_dir: str) -> dict | None:
    for path in sorted(glob.glob(os.path.join(run_dir, "checkpoints", "step_*", "config.json")), reverse=True):
        config = _read_json(path)
        if isinstance(config, dict):
            return config
    return None


def _median_throughput(records: list[dict]) -> float | None:
    """Median images/s over the logged steps, the first (warm-up) record excluded."""
    values = sorted(v for r in records[1:] if (v := _number(r.get("images_per_s"))) is not None)
    return values[len(values) // 2] if values else None


def read_trial_dir(run_dir: str) -> tuple[dict, list[dict], dict]:
    """(row, curve rows, config) of one trial directory; missing files give missing values."""
    name = os.path.basename(os.path.normpath(run_dir))
    final = _read_json(os.path.join(run_dir, "metrics.json"))
    final = final if isinstance(final, dict) else {}
    config = final.get("config") if isinstance(final.get("config"), dict) else None
    config = config or _checkpoint_config(run_dir) or {}
    records = _read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    steps = [s for r in records if (s := _number(r.get("step"), int)) is not None]
    fid_k = [r for r in records if _number(r.get("fid_k")) is not None]
    extra = config.get("extra") or {}
    row = {"name": name, "trial": trial_id_of(name), "run_dir": os.path.abspath(run_dir), "source": "files",
           "phase": extra.get("phase") or ("baselines" if name.startswith("baseline-") else "search"),
           "baseline": extra.get("baseline") or None,
           **{k: config.get(k) for k in CONFIG_FIELDS},
           "label": final.get("label") or (label_of(config) if config else None),
           "step": max(steps) if steps else None,
           "fid_k": fid_k[-1]["fid_k"] if fid_k else None,
           "feature_set": final.get("feature_set") or (fid_k[-1].get("feature_set") if fid_k else None),
           "images_per_s": _median_throughput(records),
           **{m: final.get(m) for m in (*METRICS, "num_samples")}}
    if final:
        row["status"] = "finished"
        row["step"] = max(row["step"] or 0, _number(config.get("steps"), int) or 0) or row["step"]
    for key, filename in (("samples_png", "samples.png"), ("routing_mask_png", "routing_mask.png")):
        path = os.path.join(run_dir, filename)
        row[key] = path if os.path.exists(path) else None
    row["expert_usage"] = next((p for f in EXPERT_USAGE_FILES if os.path.exists(p := os.path.join(run_dir, f))), None)
    mlflow_id = os.path.join(run_dir, "mlflow_run_id")
    if os.path.exists(mlflow_id):
        with contextlib.suppress(OSError):
            row["mlflow_run_id"] = open(mlflow_id).read().strip() or None
    curves = [{"name": name, "step": r.get("step"), "loss": r.get("loss"), "fid_k": r.get("fid_k")}
              for r in records if _number(r.get("step"), int) is not None]
    return row, curves, config


def _space_budget_guess(sweep_dir: str, configs: list[dict]) -> tuple[str | None, str | None]:
    for config in configs:
        extra = config.get("extra") or {}
        if extra.get("space") and extra.get("budget"):
            return extra["space"], extra["budget"]
    base = os.path.basename(os.path.normpath(sweep_dir))
    with contextlib.suppress(Exception):
        from search_spaces.budgets import BUDGETS
        for budget in BUDGETS:
            if base.endswith("-" + budget):
                return base[: -len(budget) - 1], budget
    return None, None


def _config_from_tune_params(sweep_dir: str, space: str | None, budget: str | None, phase: str,
                             params: dict, name: str) -> dict:
    """The config Tune would have given a trial that never wrote one (pending / failed early)."""
    if not (space and budget):
        return {}
    try:
        from trainers.tune_trainable import TrialContext, trial_config
        ctx = TrialContext(space=space, budget=budget, phase=phase, sweep_dir=sweep_dir, parent_run_id=None,
                           mlflow_experiment=f"sweep-{space}-{budget}")
        return trial_config(ctx, dict(params), name).to_dict()
    except Exception:
        return {}


def records_from_dir(sweep_dir: str) -> tuple[list[dict], list[dict], dict[str, dict], dict]:
    """Rows, curve rows, configs and meta of a sweep directory alone (no MLflow)."""
    rows, curves, configs = [], [], {}
    for run_dir in sorted(glob.glob(os.path.join(sweep_dir, "trials", "*"))):
        if not os.path.isdir(run_dir):
            continue
        row, trial_curves, config = read_trial_dir(run_dir)
        rows.append(row)
        curves.extend(trial_curves)
        configs[row["name"]] = config
    space, budget = _space_budget_guess(sweep_dir, list(configs.values()))
    states, csv = tune_states(sweep_dir), _csv_statuses(sweep_dir)
    seen = set()
    for row in rows:
        state = states.get(row["trial"])
        seen.add(row["trial"])
        if state:
            row["status"] = _tune_status(state)
            row["detail"] = state["error"]
            row["phase"] = state["phase"]
            row["wall_s"] = _number(state["last_result"].get("time_total_s"))
            if row["status"] == "finished" and row.get("fid") is None:
                for m in METRICS:  # the final report reached Tune but metrics.json is missing
                    row[m] = state["last_result"].get(m)
        elif row["trial"] in csv:
            row["status"] = csv[row["trial"]]
        elif row.get("status") != "finished":
            row["status"] = "running" if _pid_alive(row["run_dir"]) else "stopped"
    for trial_id, state in states.items():  # trials Tune knows of that never made a directory
        if trial_id in seen:
            continue
        params = dict(state["params"])
        name = (f"baseline-{str(params.get('baseline')).replace(' ', '').replace('/', '-')}-"
                f"s{params.get('seed', 0)}-{trial_id}" if "baseline" in params else f"trial-{trial_id}")
        config = _config_from_tune_params(sweep_dir, space, budget, state["phase"], params, name)
        configs[name] = config
        rows.append({"name": name, "trial": trial_id, "phase": state["phase"], "source": "tune",
                     "baseline": params.get("baseline"), "status": _tune_status(state), "detail": state["error"],
                     "label": label_of(config) if config else params.get("baseline"),
                     **{k: config.get(k, params.get(k)) for k in CONFIG_FIELDS},
                     **{m: state["last_result"].get(m) for m in (*METRICS, "fid_k", "feature_set")}})
    meta = {"space": space, "budget": budget}
    return rows, curves, configs, meta


# -- MLflow ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def quick_mlflow_http():
    """Fail fast instead of retrying for minutes when an MLflow server is unreachable."""
    defaults = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    added = {k: v for k, v in defaults.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def parent_run_id(sweep_dir: str) -> str | None:
    try:
        with open(os.path.join(sweep_dir, "mlflow_parent_run_id")) as f:
            return f.read().strip() or None
    except OSError:
        return None


def mlflow_reachable(uri: str) -> bool:
    """False for a sqlite store whose file does not exist (opening it would create an empty one)."""
    if uri.startswith("sqlite:///"):
        return os.path.exists(uri[len("sqlite:///"):])
    return True


def mlflow_client(tracking_uri: str | None = None):
    """An MlflowClient for ``tracking_uri`` (default: the project's), or None if unusable."""
    from trainers.paths import mlflow_tracking_uri
    uri = tracking_uri or mlflow_tracking_uri()
    if not mlflow_reachable(uri):
        return None
    try:
        import mlflow
        return mlflow.MlflowClient(tracking_uri=uri)
    except Exception:
        return None


_MLFLOW_STATUS = {"RUNNING": "running", "SCHEDULED": "running", "FINISHED": "finished", "FAILED": "error",
                  "KILLED": "stopped"}


def records_from_mlflow(sweep_dir: str, tracking_uri: str | None = None, *,
                        skip_history: set[str] = frozenset()) -> tuple[list[dict], list[dict], dict]:
    """Rows, fid_k curve rows (except for run names in ``skip_history``) and meta (parent params,
    start time) from the sweep's MLflow parent run; empty when unreachable."""
    parent = parent_run_id(sweep_dir)
    if not parent:
        return [], [], {}
    with quick_mlflow_http():
        client = mlflow_client(tracking_uri)
        if client is None:
            return [], [], {}
        try:
            run = client.get_run(parent)
            children = client.search_runs([run.info.experiment_id],
                                          filter_string=f"tags.mlflow.parentRunId = '{parent}'",
                                          max_results=5000)
        except Exception:
            return [], [], {}
        meta = {"parent_run_id": parent, "parent_start_ms": run.info.start_time,
                "parent_status": run.info.status, **{f"param_{k}": v for k, v in run.data.params.items()}}
        rows, curves = [], []
        for child in children:
            name = child.info.run_name or child.data.tags.get("mlflow.runName") or child.info.run_id
            params, metrics, tags = child.data.params, child.data.metrics, child.data.tags
            extra = {}
            with contextlib.suppress(Exception):
                import ast
                extra = ast.literal_eval(params.get("extra", "{}")) or {}
            rows.append({"name": name, "trial": trial_id_of(name), "source": "mlflow", "mlflow_run_id":
                         child.info.run_id, "status": _MLFLOW_STATUS.get(child.info.status, "running"),
                         "phase": extra.get("phase"), "baseline": extra.get("baseline") or None,
                         "label": tags.get("method"), "feature_set": tags.get("feature_set") or None,
                         **{k: params.get(k) for k in CONFIG_FIELDS},
                         **{m: metrics.get(m) for m in (*METRICS, "num_samples", "fid_k", "images_per_s")}})
            if name not in skip_history:
                with contextlib.suppress(Exception):
                    for point in client.get_metric_history(child.info.run_id, "fid_k"):
                        curves.append({"name": name, "step": point.step, "fid_k": point.value})
        return rows, curves, meta


# -- both -----------------------------------------------------------------------------------------

def _merge_rows(file_rows: list[dict], mlflow_rows: list[dict]) -> list[dict]:
    """File rows win; MLflow fills their missing values and adds trials the files lack.
    (MLflow run status is not trusted over Tune's for trials the files know.)"""
    by_name = {r["name"]: r for r in file_rows}
    out = list(file_rows)
    for m in mlflow_rows:
        row = by_name.get(m["name"])
        if row is None:
            out.append(m)
            continue
        for key, value in m.items():
            if key in ("status", "source", "name", "trial"):
                continue
            if row.get(key) is None and value is not None and not (key in METRICS and row.get("status") != "finished"):
                row[key] = value
    return out


def load_sweep(sweep_dir: str, *, use_mlflow: bool = True, tracking_uri: str | None = None) -> SweepRecords:
    """All records of a sweep (files first, MLflow to fill gaps unless ``use_mlflow`` is False)."""
    sweep_dir = os.path.abspath(sweep_dir)
    rows, curves, configs, meta = records_from_dir(sweep_dir)
    meta.update(sweep_dir=sweep_dir, parent_run_id=parent_run_id(sweep_dir), mlflow=False)
    if use_mlflow and meta["parent_run_id"]:
        with_curves = {c["name"] for c in curves}
        m_rows, m_curves, m_meta = records_from_mlflow(sweep_dir, tracking_uri, skip_history=with_curves)
        if m_meta:
            meta["mlflow"] = True
            meta.update(m_meta)
            rows = _merge_rows(rows, m_rows)
            curves += m_curves
            meta["space"] = meta.get("space") or m_meta.get("param_space")
            meta["budget"] = meta.get("budget") or m_meta.get("param_budget")
    for row in rows:
        row["status"] = row.get("status") if row.get("status") in STATUSES else "running"
        if not row.get("label"):
            row["label"] = row.get("baseline") or "unknown (no config yet)"
    return SweepRecords(sweep_dir=sweep_dir, trials=trials_frame(rows), curves=curves_frame(curves),
                        configs=configs, meta=meta)
