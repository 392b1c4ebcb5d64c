"""The shape of a sweep's records: the trial and curve frames, the metric names, ``SweepRecords``.

Every reader (``records_files``, ``tune_state``, ``mlflow_records``) produces plain dict rows
with any subset of ``TRIAL_SCHEMA``'s keys; ``trials_frame`` turns them into a frame with
exactly that schema, whatever the source left out or spelled as a string.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl

STATUSES = ("finished", "stopped", "error", "running")
# final metrics (metrics.json); label_accuracy: the fraction of generated samples the domain
# classifier assigns to their conditioning class (runs older than it have none)
METRICS = ("fid", "label_accuracy", "is_mean", "precision", "recall")
METRIC_NAMES = {"fid": "FID", "label_accuracy": "Label acc.", "is_mean": "IS", "precision": "Precision",
                "recall": "Recall"}
HIGHER_IS_BETTER = {"fid": False, "label_accuracy": True, "is_mean": True, "precision": True, "recall": True}

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
    "recall": pl.Float64, "label_accuracy": pl.Float64, "fid_k": pl.Float64, "feature_set": pl.Utf8,
    "num_samples": pl.Int64, "fid_protocol": pl.Utf8,
    "images_per_s": pl.Float64, "wall_s": pl.Float64, "run_dir": pl.Utf8, "samples_png": pl.Utf8,
    "routing_mask_png": pl.Utf8, "expert_usage": pl.Utf8, "mlflow_run_id": pl.Utf8, "source": pl.Utf8,
    # time to quality (reports.time_to_quality): the first step / seconds at which the trial's
    # FID-k reached the vanilla baseline's final FID-k; null when it never did or nothing to compare
    "steps_to_vanilla_fid_k": pl.Int64, "seconds_to_vanilla_fid_k": pl.Float64,
}
# one row per metrics.jsonl line: loss lines carry loss, images_per_s (throughput of the steps
# since the previous loss line) and maybe wall_s (seconds since the run started); FID-k lines fid_k
CURVE_SCHEMA = {"name": pl.Utf8, "step": pl.Int64, "loss": pl.Float64, "fid_k": pl.Float64,
                "images_per_s": pl.Float64, "wall_s": pl.Float64}
# files of a run directory a report draws, passed around as trial name -> file name -> bytes
EXPERT_USAGE_FILES = ("expert_usage.npy", "expert_usage.json")
ARTIFACT_FILES = ("samples.png", "routing_mask.png", *EXPERT_USAGE_FILES)


@dataclass
class SweepRecords:
    """Everything a report is built from (file contents such as sample PNGs come separately,
    as ``records_files.read_artifacts``)."""

    sweep_dir: str
    trials: pl.DataFrame                                # TRIAL_SCHEMA, one row per trial
    curves: pl.DataFrame                                # CURVE_SCHEMA, one row per logged step
    configs: dict[str, dict] = field(default_factory=dict)  # trial name -> full config dict
    meta: dict = field(default_factory=dict)            # space, budget, parent_run_id, started_s, ...


def number(value, kind=float):
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
        return number(value, float)
    if dtype == pl.Int64:
        return number(value, int)
    if dtype == pl.Boolean:
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes")
        return bool(value)
    return str(value)


def _frame(rows: list[dict], schema: dict) -> pl.DataFrame:
    data = {col: [_cast(r.get(col), dtype) for r in rows] for col, dtype in schema.items()}
    return pl.DataFrame(data, schema=schema)


def trials_frame(rows: list[dict]) -> pl.DataFrame:
    """Rows (dicts with any subset of TRIAL_SCHEMA's keys) as a frame with exactly that schema."""
    return _frame(rows, TRIAL_SCHEMA)


def curves_frame(rows: list[dict]) -> pl.DataFrame:
    """Curve rows (name, step, loss, fid_k) as a frame with CURVE_SCHEMA."""
    return _frame(rows, CURVE_SCHEMA)


def trial_id_of(name: str) -> str:
    """Tune trial id of a trial directory name (``trial-<id>``, ``baseline-<label>-s<seed>-<id>``)."""
    return name.rsplit("-", 1)[-1]


def config_row(config: dict) -> dict:
    """The row fields a recorded run config gives: CONFIG_FIELDS, phase and baseline (from
    ``extra``), and the method label."""
    extra = config.get("extra") or {}
    return {**{k: config.get(k) for k in CONFIG_FIELDS}, "phase": extra.get("phase") or None,
            "baseline": extra.get("baseline") or None, "label": label_of(config) if config else None}


def label_of(config: dict) -> str:
    """``RunConfig.label()`` of a recorded config (its routing/weighting names if it does not load)."""
    from trainers.config import RunConfig
    try:
        known = {k: v for k, v in config.items() if k in RunConfig.__dataclass_fields__}
        return RunConfig.from_dict(known).label()
    except Exception:  # an invalid or partial config: fall back on its routing/weighting names
        return " + ".join(str(config[k]) for k in ("routing", "weighting") if config.get(k)) or "?"
