"""Every configuration of a sweep against its baselines: one row per configuration with its
mean ± 95% CI over seeds (``stats``), its difference from the reference baseline against the
pooled seed noise and the best flag (``comparison``), time to vanilla's FID-k
(``time_to_quality``), model cost (``cost``) and paper values (``paper_values``); ``cells``
turns it into what the writers print."""
from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from reports.comparison import Comparison, compare_configurations
from reports.cost import model_cost
from reports.methods import config_name, method_params, varied_params
from reports.paper_values import (
    paper_notes,
    paper_reference,
    setting_matches,
    source_preference,
)
from reports.schema import METRICS
from reports.stats import group_trials, metric_summary, status_summary
from reports.time_to_quality import configuration_time_to_quality, reference_fid_k


@dataclass
class ConfigTable:
    frame: pl.DataFrame          # one row per configuration (see config_table)
    varied: list[str]            # the varied method parameters (columns of the frame)
    metric: str = "fid"
    mode: str = "min"
    paper_notes: list[tuple[str, str]] = field(default_factory=list)  # (marker, note)
    mixed_feature_sets: bool = False
    comparisons: list[Comparison] = field(default_factory=list)  # seed noise and best verdict per feature set
    reference_fid_k: float | None = None  # vanilla's final FID-k (mean over seeds), the time-to-quality target


def _configuration(key: tuple, members: list[dict], varied: list[str], preference: list[str], metric: str,
                   reference_feature_set: str | None) -> dict:
    kind, baseline, label, values, feature_set = key
    params = dict(zip(varied, values))
    first = members[0]
    rec = {"kind": kind, "baseline": baseline or None, "label": label, **params,
           "name": config_name(label, params, varied) + (" (baseline)" if kind == "baseline" else ""),
           "feature_set": feature_set or None, "trials": [m["name"] for m in members],
           "seeds": sorted({m["seed"] for m in members if m.get("seed") is not None}),
           "status": status_summary([m["status"] for m in members]), "n_trials": len(members),
           "n_finished": sum(m.get("status") == "finished" for m in members), **metric_summary(members)}
    steps = [m.get("steps") for m in members if m.get("steps")]
    rec["steps"] = max(steps) if steps else None
    rec["params"], rec["gflops"] = model_cost(first)
    ips = [m["images_per_s"] for m in members if m.get("images_per_s") is not None]
    rec["images_per_s"] = sum(ips) / len(ips) if ips else None
    rec["model"] = first.get("model")
    setting = {**first, "feature_set": feature_set}
    ref = paper_reference(setting, method_params(first), preference)
    rec["paper_source"] = ref[0].key if ref else None
    rec["paper_match"] = bool(ref and setting_matches(ref[0], setting))
    for m in METRICS:
        rec[f"paper_{m}"] = ref[1].get(m) if ref else None
    rec["_setting"] = setting
    rec["_values"] = [m[metric] for m in members if m.get("status") == "finished" and m.get(metric) is not None]
    rec.update(configuration_time_to_quality(members, reference_feature_set))
    return rec


def config_table(trials: pl.DataFrame, *, metric: str = "fid", mode: str = "min",
                 baselines: list[str] | None = None) -> ConfigTable:
    """Group trials into configurations; mean ± CI per metric, Δ vs the reference baseline and
    the best flag (``comparison``), time to vanilla's FID-k, cost, paper values.

    Rows: baselines first (in ``baselines`` order), then the searched configurations best first,
    configurations without a finished trial last."""
    varied = varied_params(trials)
    preference = source_preference(trials)
    reference, reference_fs = reference_fid_k(trials)
    out = [_configuration(key, members, varied, preference, metric, reference_fs)
           for key, members in group_trials(trials.to_dicts(), varied).items()]
    best_sign = 1 if mode == "min" else -1
    order = {b: i for i, b in enumerate(baselines or [])}

    def sort_key(rec):
        value = rec.get(f"{metric}_mean")
        return (rec["kind"] != "baseline", order.get(rec["baseline"], len(order)), value is None,
                best_sign * value if value is not None else 0.0, rec["name"])

    out.sort(key=sort_key)
    comparisons = compare_configurations(out, metric, mode)
    used: dict[str, list[dict]] = {}
    for r in out:
        if r["paper_source"]:
            used.setdefault(r["paper_source"], []).append(r["_setting"])
    markers = {key: chr(ord("a") + i) for i, key in enumerate(used)}
    for r in out:
        r["paper_marker"] = markers.get(r["paper_source"])
        del r["_setting"], r["_values"]
    frame = pl.DataFrame(out, infer_schema_length=None) if out else pl.DataFrame()
    return ConfigTable(frame=frame, varied=varied, metric=metric, mode=mode, paper_notes=paper_notes(used),
                       mixed_feature_sets=len(comparisons) > 1, comparisons=comparisons,
                       reference_fid_k=reference)
