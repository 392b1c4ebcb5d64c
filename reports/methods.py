"""What tells two trials' methods apart: the method fields that matter for a routing/weighting,
the ones a sweep varies, and a configuration's display name (``DTR β=0.75``)."""
from __future__ import annotations

import polars as pl

from trainers.routing.spec import WINDOW_KINDS, effective_routing_kind

PARAM_SYMBOLS = {"beta": "β", "alpha": "α", "routing_clusters": "K", "routing_cluster_method": "clusters",
                 "routing_seed": "mask seed", "roaming_every": "redraw every", "experts": "E", "top_k": "k", "prior_weight": "prior w",
                 "min_snr_gamma": "γ", "p2_gamma": "γ_P2", "p2_k": "k_P2", "uw_clusters": "K_UW",
                 "uw_cluster_method": "UW clusters", "multi_expert_n": "experts N", "model": "model",
                 "routing": "routing",
                 "weighting": "weighting", "schedule": "schedule", "lr": "lr", "global_batch": "batch"}

# Method fields a configuration is told apart by, with the routings/weightings they matter for.
_BETA_KINDS = (*WINDOW_KINDS, "learned_window")
_CLUSTER_WEIGHTINGS = ("ant_uw", "pcgrad", "nash_mtl")  # per-cluster losses over K timestep clusters
_RELEVANCE = {
    "beta": lambda r: r.get("routing") in _BETA_KINDS,
    "alpha": lambda r: r.get("routing") in ("dtr", "cdtr", "learned_window"),
    "routing_clusters": lambda r: r.get("routing") in ("cdtr", "ercdt"),
    "routing_cluster_method": lambda r: r.get("routing") in ("cdtr", "ercdt"),
    "routing_seed": lambda r: r.get("routing") in ("random", "maxroaming"),
    "roaming_every": lambda r: r.get("routing") == "maxroaming",
    "experts": lambda r: r.get("routing") == "learned",
    "top_k": lambda r: r.get("routing") == "learned",
    "prior_weight": lambda r: r.get("routing") == "learned",
    "min_snr_gamma": lambda r: r.get("weighting") == "min_snr",
    "p2_gamma": lambda r: r.get("weighting") == "p2",
    "p2_k": lambda r: r.get("weighting") == "p2",
    "uw_clusters": lambda r: r.get("weighting") in _CLUSTER_WEIGHTINGS,
    "uw_cluster_method": lambda r: r.get("weighting") in _CLUSTER_WEIGHTINGS,
    "multi_expert_n": lambda r: True,
    "routing": lambda r: True, "weighting": lambda r: True, "model": lambda r: True,
    "schedule": lambda r: True, "lr": lambda r: True, "global_batch": lambda r: True,
}
METHOD_FIELDS = tuple(_RELEVANCE)
VANILLA = "vanilla"  # the plain model's baseline name and method label: the reference of comparisons


def effective_routing(row: dict) -> str | None:
    """The routing the row's model really has (``trainers.routing.spec.effective_routing_kind``:
    a window routing at beta = 1 is the plain model, "none")."""
    routing, beta = row.get("routing"), row.get("beta")
    return effective_routing_kind(routing, beta) if routing is not None and beta is not None else routing


def method_params(row: dict) -> dict:
    """The row's method fields, with the ones that do not matter for its method set to None
    (a vanilla model's beta, DTR's gamma, ...)."""
    row = dict(row)
    row["multi_expert_n"] = row.get("multi_expert_n") or 1  # configs older than the field: one model
    row["routing"] = effective_routing(row)
    out = {f: (row.get(f) if _RELEVANCE[f](row) else None) for f in METHOD_FIELDS}
    # 0.8500000000000001 (a quantised Optuna value) and 0.85 are one configuration
    return {f: float(f"{v:.10g}") if isinstance(v, float) else v for f, v in out.items()}


def is_vanilla_baseline(row: dict) -> bool:
    """Whether a trial row (phase "baselines") or configuration row (kind "baseline") is the
    vanilla baseline, the reference a report compares every configuration with."""
    baseline = row.get("phase") == "baselines" or row.get("kind") == "baseline"
    return baseline and VANILLA in (row.get("baseline"), row.get("label"))


def varied_params(trials: pl.DataFrame) -> list[str]:
    """Method fields taking more than one value over the trials (where they matter); routing and
    weighting only when the method label does not already tell them apart."""
    rows = trials.to_dicts()
    params = [method_params(r) for r in rows]
    out = []
    for f in METHOD_FIELDS:
        values = {p[f] for p in params if p[f] is not None}
        if len(values) < 2:
            continue
        if f in ("routing", "weighting"):
            per_label: dict = {}
            for r, p in zip(rows, params):
                per_label.setdefault(r.get("label"), set()).add(p[f])
            if all(len(v) == 1 for v in per_label.values()):
                continue
        out.append(f)
    return out


def format_param(value) -> str:
    """A method field's value as a table shows it (``—`` when it does not apply)."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def config_name(label: str, params: dict, varied: list[str]) -> str:
    """``DTR β=0.75`` — the label plus the varied parameters that matter for it."""
    bits = [f"{PARAM_SYMBOLS.get(f, f)}={format_param(params.get(f))}" for f in varied
            if params.get(f) is not None and f not in ("routing", "weighting")]
    bits += [str(params[f]) for f in ("routing", "weighting") if f in varied and params.get(f) is not None]
    return " ".join([label, *bits])
