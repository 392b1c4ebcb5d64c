"""Everything a report says, computed from the sweep's records: ``assemble_report`` gives the
``ReportContent`` (header, configuration table, status, trials, figures) that the HTML and
Markdown writers print.  No file is read or written here (``build`` does that)."""
from __future__ import annotations

import datetime as _dt
import os
from collections import Counter
from dataclasses import dataclass, field

import polars as pl

from reports.cells import display_config_table, display_trials
from reports.figure_list import report_figures
from reports.paper_values import dataset_setting
from reports.schema import METRIC_NAMES, SweepRecords
from reports.table_notes import noise_warnings, table_notes
from reports.tables import config_table
from reports.time_to_quality import seconds_source


@dataclass
class ReportContent:
    """Everything the HTML and Markdown writers print (no computation left for them)."""

    title: str
    subtitle: str
    header: list[tuple[str, str]]
    warnings: list[str]
    table_headers: list[str]
    table_rows: list  # list[list[Cell]]
    table_best: list[bool]
    table_notes: list[str]
    status_line: str
    status_headers: list[str]
    status_rows: list
    trial_headers: list[str]
    trial_rows: list
    figures: list[dict] = field(default_factory=list)  # {"id", "title", "caption", "png"}
    footer: str = ""
    # further tables after the status: {"id", "title", "text", "headers", "rows" (list[list[Cell]])}
    sections: list[dict] = field(default_factory=list)


def space_and_budget(meta: dict):
    """The sweep's SearchSpace and Budget by the names its records carry (None when unknown);
    used for what the space searched and its objective, never for a trial's config."""
    space = budget = None
    try:
        from search_spaces import get_space
        space = get_space(meta["space"]) if meta.get("space") else None
    except Exception:
        pass
    try:
        from search_spaces.budgets import get_budget
        budget = get_budget(meta["budget"]) if meta.get("budget") else None
    except Exception:
        pass
    return space, budget


def _common(values) -> str | None:
    values = [v for v in values if v is not None and v != ""]
    return Counter(values).most_common(1)[0][0] if values else None


def _setting_lines(trials: pl.DataFrame) -> list[tuple[str, str]]:
    rows = trials.to_dicts()
    if not rows:
        return []
    models = sorted({r["model"] for r in rows if r.get("model")})
    first = next((r for r in rows if r.get("model")), rows[0])
    data = dataset_setting(first.get("dataset"), first.get("image_size"), first.get("data_root"))
    steps = _common(r.get("steps") for r in rows)
    batch = _common(r.get("global_batch") for r in rows)
    cfg = _common(r.get("cfg_scale") for r in rows)
    guided = _common(r.get("guided_channels") for r in rows) or 0
    if cfg is None or cfg == 1.0:
        cfg_text = "scale 1.0 (no guidance)"
    else:
        cfg_text = (f"scale {cfg:g} on all channels (DTR / Switch-DiT convention)" if not guided else
                    f"scale {cfg:g} on the first {guided} channels (DiT / ANT convention)")
    sampler = _common(r.get("sampler") for r in rows)
    sample_steps = _common(r.get("sample_steps") for r in rows)
    evals = _common(r.get("final_eval_samples") for r in rows)
    return [("Model / data", f"{', '.join(models) or '?'} on {data}"),
            ("Training", f"{steps:,} steps, global batch {batch}" if steps and batch else "?"),
            ("Sampling", f"{sampler or '?'} with {sample_steps or '?'} steps; "
                         f"{f'{evals:,}' if evals else '?'} samples for the final metrics; CFG {cfg_text}")]


def _sweep_date(meta: dict) -> str:
    """When the sweep started: its MLflow parent run's start, else its oldest trial directory."""
    seconds = meta["parent_start_ms"] / 1000 if meta.get("parent_start_ms") else meta.get("started_s")
    return _dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M") if seconds else "unknown"


def _header(records: SweepRecords, space, budget, metric: str, mode: str, feature_sets: list[str],
            tracking_uri: str | None) -> list[tuple[str, str]]:
    trials, meta = records.trials, records.meta
    counts = Counter(trials["status"].to_list())
    parent = meta.get("parent_run_id")
    objectives = meta.get("objectives") or [(metric, mode)]
    return [("Search space", f"{space.name} — {space.description}" if space else (meta.get("space") or "?")),
            ("Budget", f"{budget.name} — {budget.description}" if budget else (meta.get("budget") or "?")),
            ("Objective" if len(objectives) == 1 else "Objectives (Pareto front below)",
             "; ".join(f"{METRIC_NAMES.get(m, m)} ({'lower' if d == 'min' else 'higher'} is better)"
                       for m, d in objectives)),
            ("Feature set", ", ".join(feature_sets) or "none yet (no finished evaluation)"),
            ("FID protocol", "; ".join(_protocols(trials)) or "none yet (no finished evaluation)"),
            *_setting_lines(trials),
            ("Trials", f"{trials.height} ({', '.join(f'{counts[s]} {s}' for s in counts)})" if trials.height else "0"),
            ("Sweep started", _sweep_date(meta)),
            ("MLflow parent run", (f"{parent} ({tracking_uri or 'default store'})" if parent else "none")
             + ("" if meta.get("mlflow") or not parent else " — not read (unreachable or --no-mlflow)")),
            ("Sweep directory", records.sweep_dir)]


def _protocols(trials: pl.DataFrame) -> list[str]:
    """The distinct FID protocols (sampler, steps, guidance, samples, reference, features) of final results."""
    return sorted({p for p in trials["fid_protocol"].to_list() if p}) if "fid_protocol" in trials.columns else []


def _warnings(trials: pl.DataFrame, metric: str, feature_sets: list[str]) -> list[str]:
    out = []
    if len(_protocols(trials)) > 1:
        out.append("final FIDs were measured with different protocols (see the header): only numbers of one "
                   "protocol compare.")
    if len(feature_sets) > 1:
        out.append(f"this sweep mixes feature sets ({', '.join(feature_sets)}): FID / precision / recall of "
                   "different feature sets are not comparable; each configuration lists its own and the best "
                   "is judged per feature set.")
    missing = trials.filter((pl.col("status") == "finished") & pl.col(metric).is_null())
    if missing.height:
        out.append(f"{missing.height} finished trial(s) have no final {metric} (metrics.json missing?): "
                   + ", ".join(missing["name"].to_list()))
    return out


def _status_line(trials: pl.DataFrame, unfinished: pl.DataFrame) -> str:
    counts = Counter(trials["status"].to_list())
    if trials.height == 0:
        return "No trials yet."
    if unfinished.height == 0:
        return f"All {trials.height} trials finished."
    return (f"{unfinished.height} of {trials.height} trials are not finished "
            f"({', '.join(f'{counts[s]} {s}' for s in ('running', 'stopped', 'error') if counts[s])}); "
            "stopped = ended early (ASHA or interrupted), no final metrics.")


def _pareto_sections(records: SweepRecords, space) -> list[dict]:
    """The Pareto-front table of a sweep with two or more objectives (reports/pareto.py)."""
    from reports.pareto import front_table, pareto_note
    objectives = records.meta.get("objectives") or []
    if len(objectives) < 2:
        return []
    params = [p for p in (space.params if space else []) if p in records.trials.columns]
    headers, rows = front_table(records.trials, objectives, params)
    return [{"id": "pareto-front", "title": "Pareto front", "text": pareto_note(records.trials, objectives),
             "headers": headers, "rows": rows}]


def assemble_report(records: SweepRecords, *, artifacts: dict[str, dict[str, bytes]] | None = None,
                    bench_history: pl.DataFrame | None = None, tracking_uri: str | None = None,
                    now: _dt.datetime | None = None) -> ReportContent:
    """Tables, figures and texts of a sweep's records.  ``artifacts``: trial name -> file name ->
    bytes (samples.png, routing_mask.png, expert_usage.*); ``bench_history``: the benchmark trend
    frame (``bench_history.history_rows``); ``now``: the generation time printed."""
    trials, meta = records.trials, records.meta
    space, budget = space_and_budget(meta)
    metric = (space.metric if space else None) or meta.get("param_metric") or "fid"
    mode = (space.mode if space else None) or meta.get("param_mode") or "min"
    table = config_table(trials, metric=metric, mode=mode, baselines=list(space.baselines) if space else [])
    headers, rows, best = display_config_table(table)
    feature_sets = sorted({f for f in trials["feature_set"].to_list() if f})
    unfinished = trials.filter(pl.col("status") != "finished")
    s_headers, s_rows = display_trials(unfinished, table.varied, table.reference_fid_k)
    t_headers, t_rows = display_trials(trials, table.varied, table.reference_fid_k)
    name = os.path.basename(records.sweep_dir.rstrip(os.sep))
    stamp = (now or _dt.datetime.now()).strftime("%Y-%m-%d %H:%M")
    return ReportContent(
        title=f"Sweep report: {space.name if space else name}" + (f" ({budget.name})" if budget else ""),
        subtitle=f"{name} — generated {stamp}",
        header=_header(records, space, budget, metric, mode, feature_sets, tracking_uri),
        warnings=_warnings(trials, metric, feature_sets) + noise_warnings(table),
        table_headers=headers, table_rows=rows, table_best=best,
        table_notes=table_notes(table, feature_sets, seconds_source(records.curves)),
        status_line=_status_line(trials, unfinished), status_headers=s_headers, status_rows=s_rows,
        trial_headers=t_headers, trial_rows=t_rows,
        figures=report_figures(table, records, artifacts or {}, bench_history),
        sections=_pareto_sections(records, space),
        footer=f"generated by python -m reports at {stamp} from {records.sweep_dir}")
