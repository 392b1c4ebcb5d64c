"""Every configuration of a sweep against its baselines: mean ± 95% CI over seeds, cost, paper values.

A configuration is a group of trials with the same phase (baseline name), method label,
feature set and values of the *varied* method parameters (those that take more than one
value in the sweep, counted only where they matter: beta for routed models, gamma for
Min-SNR, ...).  Metrics are averaged over the group's finished trials; the 95% interval is
``t_{0.975, n-1} * s / sqrt(n)`` (scipy.stats.t) for n >= 2, and n = 1 is shown without one.

Paper values (methods.md §3) sit beside each metric for the configurations the papers
report.  Each paper table has a setting (model, data, Inception FID-50K, ...): when the
sweep's setting differs — every laptop- or smoke-scale sweep — the column is still shown,
as a reference for the *ordering* of methods, and the table's note lists the differences.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import polars as pl

from reports.records import METRICS, STATUSES

METRIC_NAMES = {"fid": "FID", "is_mean": "IS", "precision": "Precision", "recall": "Recall"}
HIGHER_IS_BETTER = {"fid": False, "is_mean": True, "precision": True, "recall": True}
PARAM_SYMBOLS = {"beta": "β", "alpha": "α", "routing_clusters": "K", "routing_cluster_method": "clusters",
                 "routing_seed": "mask seed", "experts": "E", "top_k": "k", "prior_weight": "prior w",
                 "min_snr_gamma": "γ", "p2_gamma": "γ_P2", "p2_k": "k_P2", "uw_clusters": "K_UW",
                 "uw_cluster_method": "UW clusters", "multi_expert_n": "experts N", "model": "model",
                 "routing": "routing",
                 "weighting": "weighting", "schedule": "schedule", "lr": "lr", "global_batch": "batch"}

# Method fields a configuration is told apart by, with the routings/weightings they matter for.
_BETA_KINDS = ("dtr", "random", "cdtr", "learned_window")
_RELEVANCE = {
    "beta": lambda r: r.get("routing") in _BETA_KINDS,
    "alpha": lambda r: r.get("routing") in ("dtr", "cdtr", "learned_window"),
    "routing_clusters": lambda r: r.get("routing") in ("cdtr", "ercdt"),
    "routing_cluster_method": lambda r: r.get("routing") in ("cdtr", "ercdt"),
    "routing_seed": lambda r: r.get("routing") == "random",
    "experts": lambda r: r.get("routing") == "learned",
    "top_k": lambda r: r.get("routing") == "learned",
    "prior_weight": lambda r: r.get("routing") == "learned",
    "min_snr_gamma": lambda r: r.get("weighting") == "min_snr",
    "p2_gamma": lambda r: r.get("weighting") == "p2",
    "p2_k": lambda r: r.get("weighting") == "p2",
    "uw_clusters": lambda r: r.get("weighting") == "ant_uw",
    "uw_cluster_method": lambda r: r.get("weighting") == "ant_uw",
    "multi_expert_n": lambda r: True,
    "routing": lambda r: True, "weighting": lambda r: True, "model": lambda r: True,
    "schedule": lambda r: True, "lr": lambda r: True, "global_batch": lambda r: True,
}
METHOD_FIELDS = tuple(_RELEVANCE)


def method_params(row: dict) -> dict:
    """The row's method fields, with the ones that do not matter for its method set to None
    (a vanilla model's beta, DTR's gamma, ...).  DTR/R-TR/CDTR at beta = 1 is the plain model."""
    row = dict(row)
    row["multi_expert_n"] = row.get("multi_expert_n") or 1  # configs older than the field: one model
    if row.get("routing") in ("dtr", "random", "cdtr") and row.get("beta") == 1.0:
        row["routing"] = "none"
    out = {f: (row.get(f) if _RELEVANCE[f](row) else None) for f in METHOD_FIELDS}
    # 0.8500000000000001 (a quantised Optuna value) and 0.85 are one configuration
    return {f: float(f"{v:.10g}") if isinstance(v, float) else v for f, v in out.items()}


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


def mean_ci(values, confidence: float = 0.95) -> tuple[float | None, float | None, int]:
    """(mean, half-width of the two-sided t interval, n) of the finite values; no interval for n < 2."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return None, None, 0
    mean = sum(xs) / n
    if n == 1:
        return mean, None, 1
    from scipy.stats import t
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return mean, float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n), n


def format_number(x: float | None, digits: int | None = None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if digits is None:
        ax = abs(x)
        digits = 1 if ax >= 100 else 2 if ax >= 10 else 3
    return f"{x:.{digits}f}"


def format_mean_ci(mean: float | None, ci: float | None, n: int) -> str:
    """``12.34 ± 0.56`` (n >= 2), ``12.34 (n=1)``, or ``—`` with no value."""
    if mean is None or n == 0:
        return "—"
    digits = 1 if abs(mean) >= 100 else 2 if abs(mean) >= 10 else 3  # the interval gets the mean's precision
    if n == 1 or ci is None:
        return f"{format_number(mean, digits)} (n=1)"
    return f"{format_number(mean, digits)} ± {format_number(ci, digits)}"


def format_param(name: str, value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def config_name(label: str, params: dict, varied: list[str]) -> str:
    """``DTR β=0.75`` — the label plus the varied parameters that matter for it."""
    bits = [f"{PARAM_SYMBOLS.get(f, f)}={format_param(f, params.get(f))}" for f in varied
            if params.get(f) is not None and f not in ("routing", "weighting")]
    bits += [str(params[f]) for f in ("routing", "weighting") if f in varied and params.get(f) is not None]
    return " ".join([label, *bits])


# -- cost: parameters and GFLOPs of a config's model (meta device, cached) ------------------------

@lru_cache(maxsize=None)
def _model_cost(model: str, image_size: int, dataset: str, data_root: str, class_cond: bool, learn_sigma: bool,
                routing: str, experts: int, top_k: int) -> tuple[int | None, float | None]:
    import torch
    from trainers.data import dataset_info
    from trainers.models import build_model, forward_macs
    from trainers.routing import RoutingSpec
    try:
        channels, classes = dataset_info(dataset, data_root or None)
        spec = RoutingSpec(kind=routing, experts=experts, top_k=top_k) if routing in ("learned",) else None
        with torch.device("meta"):
            net = build_model(model, input_size=image_size, in_channels=channels,
                              num_classes=classes if class_cond else 1, learn_sigma=learn_sigma, routing=spec)
    except Exception:
        return None, None
    params = sum(p.numel() for p in net.parameters())
    try:
        gflops = forward_macs(net) / 1e9
    except Exception:  # the analytic counter is DiT-only (ADM has no hidden_size)
        gflops = None
    return params, gflops


def model_cost(row: dict) -> tuple[int | None, float | None]:
    """(parameter count, forward GFLOPs = MACs / 1e9) of the row's model; (None, None) if unknown.
    Cached per model name and the few fields that change the count (data channels/classes,
    learned routing's experts); fixed masks hold no parameters; a multi-expert run counts its
    N models (its GFLOPs stay one model's: one expert denoises each sample)."""
    if not row.get("model"):
        return None, None
    params, gflops = _model_cost(row["model"], int(row.get("image_size") or 32),
                                 row.get("dataset") or "fashion_mnist",
                                 row.get("data_root") or "", bool(row.get("class_cond", True) is not False),
                                 bool(row.get("learn_sigma", True) is not False), row.get("routing") or "none",
                                 int(row.get("experts") or 3), int(row.get("top_k") or 2))
    n = int(row.get("multi_expert_n") or 1)  # a multi-expert ensemble holds N models, runs one per sample
    return (params * n if params is not None else None), gflops


# -- paper values (methods.md §3) -----------------------------------------------------------------

@dataclass(frozen=True)
class PaperSource:
    key: str
    title: str
    model: str
    dataset: str
    steps: int | None
    cfg_scale: float | None
    entries: tuple  # ((method dict, values dict), ...)
    feature_set: str = "inception"

    def setting_text(self) -> str:
        bits = [self.model, self.dataset]
        if self.steps:
            bits.append(f"{self.steps // 1000}K iters")
        if self.cfg_scale:
            bits.append(f"cfg {self.cfg_scale}")
        bits.append("FID-50K (Inception)")
        return ", ".join(bits)


def _vanilla(**values):
    return ({"routing": "none", "weighting": "vanilla"}, values)


def _dtr(alpha=4.0, weighting="vanilla", **values):
    return ({"routing": "dtr", "weighting": weighting, "beta": 0.8, "alpha": alpha}, values)


PAPER_SOURCES = (
    PaperSource("dtr-t1", "DTR paper, Tables 1–2", "DiT-L/2", "ImageNet-256", 400_000, 1.5, (
        _vanilla(fid=12.59, is_mean=134.60, precision=0.73, recall=0.49),
        ({"routing": "random", "weighting": "vanilla", "beta": 0.8},
         dict(fid=16.18, is_mean=105.88, precision=0.70, recall=0.51)),
        _dtr(fid=8.90, is_mean=156.48, precision=0.77, recall=0.51),
        ({"routing": "none", "weighting": "min_snr"}, dict(fid=9.58, is_mean=179.98, precision=0.78, recall=0.47)),
        _dtr(weighting="min_snr", fid=8.24, is_mean=186.02, precision=0.79, recall=0.50),
        ({"routing": "none", "weighting": "ant_uw"}, dict(fid=5.85, is_mean=206.68, precision=0.84, recall=0.46)),
        _dtr(weighting="ant_uw", fid=4.61, is_mean=208.76, precision=0.84, recall=0.48))),
    PaperSource("dtr-t4-imagenet", "DTR paper, Table 4 (alpha ablation)", "DiT-L/2", "ImageNet-256", 400_000, 1.5, (
        _vanilla(fid=12.59),
        *(_dtr(alpha=a, fid=f) for a, f in zip((0.5, 1, 2, 3, 4, 5), (11.55, 10.31, 9.39, 8.89, 8.90, 9.66))))),
    PaperSource("dtr-t4-ffhq", "DTR paper, Table 4 (alpha ablation)", "DiT-B/2", "FFHQ-256", None, None, (
        _vanilla(fid=10.99),
        *(_dtr(alpha=a, fid=f) for a, f in zip((0.5, 1, 2, 3, 4, 5), (7.78, 7.78, 7.64, 7.77, 7.32, 7.40))))),
    PaperSource("dtr-appf", "DTR paper, App. F (clustered variants)", "DiT-B/2", "FFHQ-256", None, None, (
        _vanilla(fid=10.99),
        ({"routing": "ercdt", "weighting": "vanilla"}, dict(fid=10.13)),
        ({"routing": "cdtr", "weighting": "vanilla", "beta": 0.8, "alpha": 4.0}, dict(fid=9.61)),
        _dtr(fid=7.32))),
    PaperSource("dtr-appd", "DTR paper, App. D (multi-expert; experts are DiT-B/2)", "DiT-L/2", "ImageNet-256",
                400_000, 1.5, (
        _vanilla(fid=12.59), _dtr(fid=8.90),
        ({"routing": "none", "weighting": "vanilla", "multi_expert_n": 4}, dict(fid=9.48)))),
    PaperSource("switch-s", "Switch-DiT paper (S)", "DiT-S/2", "ImageNet-256", None, 1.5, (
        _vanilla(fid=44.28), _dtr(fid=37.43),
        ({"routing": "learned", "weighting": "vanilla"}, dict(fid=33.99)))),
    PaperSource("switch-xl", "Switch-DiT paper (XL)", "DiT-XL/2", "ImageNet-256", None, 1.5, (
        _vanilla(fid=9.40), _dtr(fid=10.85),
        ({"routing": "learned", "weighting": "vanilla"}, dict(fid=8.76)))),
)
PAPER_BY_KEY = {s.key: s for s in PAPER_SOURCES}


def dataset_setting(dataset: str | None, image_size: int | None, data_root: str | None = None) -> str:
    """Data set + resolution in the papers' naming (``ImageNet-256``; latents are 8x downsampled)."""
    dataset, root, size = dataset or "?", (data_root or "").lower(), image_size or 0
    if dataset == "latents":
        return f"{'FFHQ' if 'ffhq' in root else 'ImageNet'}-{size * 8}"
    if dataset == "imagenet_folder":
        return f"ImageNet-{size}"
    if dataset == "image_folder" and "ffhq" in root:
        return f"FFHQ-{size}"
    return f"{dataset}-{size}"


def _matches(method: dict, params: dict) -> bool:
    if params.get("multi_expert_n") not in (None, 1) and "multi_expert_n" not in method:
        return False  # a multi-expert ensemble is not the single model of the same routing
    for key, want in method.items():
        have = params.get(key)
        if isinstance(want, float):
            if have is None or abs(float(have) - want) > 1e-6:
                return False
        elif have != want:
            return False
    return True


def _setting_score(source: PaperSource, row: dict) -> int:
    data = dataset_setting(row.get("dataset"), row.get("image_size"), row.get("data_root"))
    return 2 * (row.get("model") == source.model) + 2 * (data == source.dataset)


def setting_matches(source: PaperSource, row: dict) -> bool:
    """Same model, data set and feature set as the paper table (steps/cfg may still differ)."""
    return _setting_score(source, row) == 4 and (row.get("feature_set") or "").startswith(source.feature_set)


def source_preference(trials: pl.DataFrame) -> list[str]:
    """Paper tables in the order a sweep prefers them: the alpha ablation when alpha is varied,
    App. F when clustered routings are present, Switch-DiT for learned routing, else Tables 1–2."""
    routings = set(trials["routing"].drop_nulls().to_list()) if trials.height else set()
    dtr = trials.filter(pl.col("routing") == "dtr") if trials.height else trials
    dtr_alphas = set(dtr["alpha"].drop_nulls().to_list())
    order = []
    if len(dtr_alphas) > 1:
        order += ["dtr-t4-imagenet", "dtr-t4-ffhq"]
    if routings & {"cdtr", "ercdt"}:
        order += ["dtr-appf"]
    if "learned" in routings:
        order += ["switch-s", "switch-xl"]
    if trials.height and "multi_expert_n" in trials.columns and (trials["multi_expert_n"].fill_null(1) > 1).any():
        order += ["dtr-appd"]
    order += [s.key for s in PAPER_SOURCES if s.key not in order]
    return order


def paper_reference(row: dict, params: dict, preference: list[str]) -> tuple[PaperSource, dict] | None:
    """The paper values for a configuration: among the tables that report its method, the one
    whose setting is closest to the row's (model, data), ties broken by ``preference``."""
    best = None
    for rank, key in enumerate(preference):
        source = PAPER_BY_KEY[key]
        for method, values in source.entries:
            if _matches(method, params):
                score = (_setting_score(source, row), -rank)
                if best is None or score > best[0]:
                    best = (score, source, values)
    return (best[1], best[2]) if best else None


def setting_differences(source: PaperSource, row: dict) -> list[str]:
    """What differs between a configuration's setting and the paper table's."""
    out = []
    data = dataset_setting(row.get("dataset"), row.get("image_size"), row.get("data_root"))
    if row.get("model") != source.model:
        out.append(f"model {row.get('model')} (paper {source.model})")
    if data != source.dataset:
        out.append(f"data {data} (paper {source.dataset})")
    if not (row.get("feature_set") or "").startswith(source.feature_set):
        out.append(f"features {row.get('feature_set') or '?'} (paper Inception)")
    if source.steps and row.get("steps") and int(row["steps"]) != source.steps:
        out.append(f"{row['steps']:,} steps (paper {source.steps:,})")
    if source.cfg_scale and row.get("cfg_scale") is not None and float(row["cfg_scale"]) != source.cfg_scale:
        out.append(f"cfg {row['cfg_scale']:g} (paper {source.cfg_scale:g})")
    num = row.get("final_eval_samples")
    if num and int(num) != 50_000:
        out.append(f"{int(num):,} samples (paper 50,000)")
    return out


# -- the configuration table -----------------------------------------------------------------------

@dataclass
class ConfigTable:
    frame: pl.DataFrame          # one row per configuration (see config_table)
    varied: list[str]            # the varied method parameters (columns of the frame)
    metric: str = "fid"
    mode: str = "min"
    paper_notes: list[tuple[str, str]] = field(default_factory=list)  # (marker, note)
    mixed_feature_sets: bool = False


def _status_summary(statuses: list[str]) -> str:
    counts = Counter(statuses)
    return ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])


def config_table(trials: pl.DataFrame, *, metric: str = "fid", mode: str = "min",
                 baselines: list[str] | None = None) -> ConfigTable:
    """Group trials into configurations; mean ± CI per metric, cost, paper values, best flag.

    Rows: baselines first (in ``baselines`` order), then the searched configurations best first,
    configurations without a finished trial last."""
    rows = trials.to_dicts()
    varied = varied_params(trials)
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        params = method_params(row)
        kind = "baseline" if row.get("phase") == "baselines" else "search"
        key = (kind, (row.get("baseline") or "") if kind == "baseline" else "", row.get("label") or "?",
               tuple(params[f] for f in varied), row.get("feature_set") or "")
        groups.setdefault(key, []).append(row)
    # trials without a feature set yet (unfinished) join their configuration's finished group
    for key in [k for k in groups if k[4] == ""]:
        siblings = [k for k in groups if k[:4] == key[:4] and k[4]]
        if siblings:
            groups[siblings[0]].extend(groups.pop(key))
    preference = source_preference(trials)
    out, notes, used_sources = [], [], {}
    for (kind, baseline, label, values, feature_set), members in groups.items():
        params = dict(zip(varied, values))
        first = members[0]
        finished = [m for m in members if m.get("status") == "finished"]
        rec = {"kind": kind, "baseline": baseline or None, "label": label, **params,
               "name": config_name(label, params, varied) + (" (baseline)" if kind == "baseline" else ""),
               "feature_set": feature_set or None, "trials": [m["name"] for m in members],
               "seeds": sorted({m["seed"] for m in members if m.get("seed") is not None}),
               "status": _status_summary([m["status"] for m in members]), "n_trials": len(members),
               "n_finished": len(finished)}
        for m in METRICS:
            mean, ci, n = mean_ci([f.get(m) for f in finished])
            rec.update({f"{m}_mean": mean, f"{m}_ci": ci, f"{m}_n": n})
        steps = [m.get("steps") for m in members if m.get("steps")]
        rec["steps"] = max(steps) if steps else None
        rec["params"], rec["gflops"] = model_cost(first)
        ips = [m["images_per_s"] for m in members if m.get("images_per_s") is not None]
        rec["images_per_s"] = sum(ips) / len(ips) if ips else None
        rec["model"] = first.get("model")
        ref = paper_reference({**first, "feature_set": feature_set}, method_params(first), preference)
        rec["paper_source"] = ref[0].key if ref else None
        rec["paper_match"] = bool(ref and setting_matches(ref[0], {**first, "feature_set": feature_set}))
        for m in METRICS:
            rec[f"paper_{m}"] = ref[1].get(m) if ref else None
        if ref:
            used_sources.setdefault(ref[0].key, []).append({**first, "feature_set": feature_set})
        out.append(rec)
    best_sign = 1 if mode == "min" else -1
    order = {b: i for i, b in enumerate(baselines or [])}

    def sort_key(rec):
        value = rec.get(f"{metric}_mean")
        return (rec["kind"] != "baseline", order.get(rec["baseline"], len(order)), value is None,
                best_sign * value if value is not None else 0.0, rec["name"])

    out.sort(key=sort_key)
    feature_sets = {r["feature_set"] for r in out if r["feature_set"]}
    for fs in feature_sets or {None}:  # best per feature set: FIDs of different features never compare
        scored = [r for r in out if r["feature_set"] == fs and r.get(f"{metric}_mean") is not None]
        best = min(scored, key=lambda r: best_sign * r[f"{metric}_mean"]) if scored else None
        for r in out:
            r["best"] = r.get("best", False) or r is best
    for i, (key, members) in enumerate(used_sources.items()):
        source = PAPER_BY_KEY[key]
        diffs = list(dict.fromkeys(d for m in members for d in setting_differences(source, m)))
        matched = all(setting_matches(source, m) for m in members)
        note = f"{source.title}: {source.setting_text()}. "
        if matched:
            note += "Setting matches (model, data, Inception features)" + (
                f"; differences: {'; '.join(diffs)}." if diffs else ".")
        else:
            note += ("Settings differ — " + "; ".join(diffs) + ". The paper values are a reference for the "
                     "ordering of methods, not numbers this sweep should reproduce.")
        notes.append((chr(ord("a") + i), note))
    markers = {key: chr(ord("a") + i) for i, key in enumerate(used_sources)}
    for r in out:
        r["paper_marker"] = markers.get(r["paper_source"])
    frame = pl.DataFrame(out, infer_schema_length=None) if out else pl.DataFrame()
    return ConfigTable(frame=frame, varied=varied, metric=metric, mode=mode, paper_notes=notes,
                       mixed_feature_sets=len(feature_sets) > 1)


# -- display (shared by the HTML and Markdown writers) ---------------------------------------------

@dataclass
class Cell:
    text: str
    bold: bool = False
    muted: bool = False


def display_config_table(table: ConfigTable) -> tuple[list[str], list[list[Cell]], list[bool]]:
    """(headers, rows of cells, is-best per row) of the configuration table.  Paper columns appear
    beside each metric when any configuration has a paper value; cells carry the note's marker."""
    frame = table.frame
    if frame.height == 0:
        return [], [], []
    rows = frame.to_dicts()
    paper_cols = [m for m in METRICS if any(r.get(f"paper_{m}") is not None for r in rows)]
    shown_metrics = [m for m in METRICS if any(r.get(f"{m}_n") for r in rows) or m in paper_cols or m == table.metric]
    headers = ["configuration", *[PARAM_SYMBOLS.get(p, p) for p in table.varied], "seeds", "status"]
    for m in shown_metrics:
        headers.append(METRIC_NAMES[m] + (" ↓" if not HIGHER_IS_BETTER[m] else " ↑"))
        if m in paper_cols:
            headers.append(f"paper {METRIC_NAMES[m]}")
    show_fs = table.mixed_feature_sets
    headers += (["features"] if show_fs else []) + ["steps", "params (M)", "GFLOPs", "images/s"]
    best_values = {}
    for m in shown_metrics:
        values = [r[f"{m}_mean"] for r in rows if r.get(f"{m}_mean") is not None]
        if len(set(values)) > 1 and not show_fs:  # ties everywhere: nothing to point out
            best_values[m] = max(values) if HIGHER_IS_BETTER[m] else min(values)
    out, best = [], []
    for r in rows:
        name = r["label"] + (" (baseline)" if r["kind"] == "baseline" else "") + (" ★" if r.get("best") else "")
        cells = [Cell(name, bold=bool(r.get("best")))]
        cells += [Cell(format_param(p, r.get(p))) for p in table.varied]
        seeds = r.get("seeds") or []
        cells.append(Cell(", ".join(str(s) for s in seeds) if seeds else "—"))
        cells.append(Cell(r["status"], muted=r["n_finished"] == r["n_trials"]))
        for m in shown_metrics:
            mean = r.get(f"{m}_mean")
            cells.append(Cell(format_mean_ci(mean, r.get(f"{m}_ci"), r.get(f"{m}_n") or 0),
                              bold=mean is not None and mean == best_values.get(m)))
            if m in paper_cols:
                value = r.get(f"paper_{m}")
                text = format_number(value) + (f" [{r['paper_marker']}]" if value is not None else "")
                cells.append(Cell(text if value is not None else "—", muted=True))
        if show_fs:
            cells.append(Cell(r.get("feature_set") or "—"))
        params = r.get("params")
        cells += [Cell(f"{r['steps']:,}" if r.get("steps") else "—"),
                  Cell(f"{params / 1e6:.2f}" if params else "—"),
                  Cell(format_number(r.get("gflops"), 3) if r.get("gflops") is not None else "—"),
                  Cell(format_number(r.get("images_per_s"), 1) if r.get("images_per_s") is not None else "—")]
        out.append(cells)
        best.append(bool(r.get("best")))
    return headers, out, best


TRIAL_COLUMNS = ("name", "phase", "label", "seed", "status", "step", "steps", "fid", "fid_k", "is_mean",
                 "precision", "recall", "images_per_s", "detail")


def display_trials(trials: pl.DataFrame, varied: list[str]) -> tuple[list[str], list[list[Cell]]]:
    """Every trial (one row per seed), for the appendix and the status section."""
    headers = ["trial", "phase", "configuration", "seed", "status", "step", "FID", "FID-k (last)", "IS",
               "Precision", "Recall", "images/s", "detail"]
    out = []
    for r in trials.to_dicts():
        params = method_params(r)
        step = (f"{r['step'] or 0:,}/{r['steps']:,}" if r.get("steps")
                else f"{r['step']:,}" if r.get("step") else "—")
        out.append([Cell(r["name"]), Cell(r.get("phase") or "—"),
                    Cell(config_name(r.get("label") or "?", params, varied)),
                    Cell(str(r["seed"]) if r.get("seed") is not None else "—"),
                    Cell(r["status"], bold=r["status"] == "error"), Cell(step),
                    *[Cell(format_number(r.get(m))) for m in ("fid", "fid_k", "is_mean", "precision", "recall")],
                    Cell(format_number(r.get("images_per_s"), 1)), Cell(r.get("detail") or "")])
    return headers, out
