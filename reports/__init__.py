"""Sweep reports: pure functions from run records to tables and figures, and the files they make.

    python -m reports runs/sweeps/dtr_beta-laptop          # or just: python -m reports dtr_beta-laptop
    python -m reports dtr_beta-laptop --no-mlflow          # files only: no MLflow read or upload

``build_report(sweep_dir)`` writes ``<sweep_dir>/report.html`` (self-contained: figures as
base64 PNG), ``<sweep_dir>/report.md`` (+ ``report_files/*.png`` it links to) and logs them
to the sweep's MLflow parent run when it is reachable.  Modules: ``records`` (sweep dir +
MLflow -> polars frames), ``tables`` (configurations, mean ± 95% CI, cost, paper values),
``figures`` (matplotlib), ``html`` / ``markdown`` (writers).  Submodules are imported lazily,
so ``import reports.cka`` stays light.
"""
from __future__ import annotations

import datetime as _dt
import os
from collections import Counter
from dataclasses import dataclass, field

REPORT_HTML = "report.html"
REPORT_MD = "report.md"
FIGURE_DIR = "report_files"


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


def _space_and_budget(meta: dict):
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


def _setting_lines(trials) -> list[tuple[str, str]]:
    from reports.tables import dataset_setting
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


def _sweep_date(records) -> str:
    start_ms = records.meta.get("parent_start_ms")
    if start_ms:
        return _dt.datetime.fromtimestamp(start_ms / 1000).strftime("%Y-%m-%d %H:%M")
    times = []
    for d in records.trials["run_dir"].drop_nulls().to_list():
        try:
            times.append(os.path.getmtime(d))
        except OSError:
            pass
    return _dt.datetime.fromtimestamp(min(times)).strftime("%Y-%m-%d %H:%M") if times else "unknown"


def assemble_report(records, *, tracking_uri: str | None = None) -> ReportContent:
    """Tables, figures and texts of a sweep's records (``reports.records.SweepRecords``)."""
    import polars as pl

    from reports import figures as F
    from reports.tables import METRIC_NAMES, config_table, display_config_table, display_trials

    trials, meta = records.trials, records.meta
    space, budget = _space_and_budget(meta)
    metric = (space.metric if space else None) or meta.get("param_metric") or "fid"
    mode = (space.mode if space else None) or meta.get("param_mode") or "min"
    baselines = list(space.baselines) if space else []
    table = config_table(trials, metric=metric, mode=mode, baselines=baselines)
    headers, rows, best = display_config_table(table)
    feature_sets = sorted({f for f in trials["feature_set"].to_list() if f})
    counts = Counter(trials["status"].to_list())

    name = os.path.basename(records.sweep_dir.rstrip(os.sep))
    header = [("Search space", f"{space.name} — {space.description}" if space else (meta.get("space") or "?")),
              ("Budget", f"{budget.name} — {budget.description}" if budget else (meta.get("budget") or "?")),
              ("Objective", f"{METRIC_NAMES.get(metric, metric)} ({'lower' if mode == 'min' else 'higher'} is better)"),
              ("Feature set", ", ".join(feature_sets) or "none yet (no finished evaluation)"),
              *_setting_lines(trials),
              ("Trials", f"{trials.height} ({', '.join(f'{counts[s]} {s}' for s in counts)})"
               if trials.height else "0"),
              ("Sweep started", _sweep_date(records)),
              ("MLflow parent run", (f"{meta['parent_run_id']} ({tracking_uri or 'default store'})"
                                     if meta.get("parent_run_id") else "none")
               + ("" if meta.get("mlflow") or not meta.get("parent_run_id")
                  else " — not read (unreachable or --no-mlflow)")),
              ("Sweep directory", records.sweep_dir)]
    warnings = []
    if len(feature_sets) > 1:
        warnings.append(f"this sweep mixes feature sets ({', '.join(feature_sets)}): FID / precision / recall of "
                        "different feature sets are not comparable; each configuration lists its own and the best "
                        "is marked per feature set.")
    missing = trials.filter((pl.col("status") == "finished") & pl.col(metric).is_null())
    if missing.height:
        warnings.append(f"{missing.height} finished trial(s) have no final {metric} (metrics.json missing?): "
                        + ", ".join(missing["name"].to_list()))

    notes = [f"Mean ± 95% confidence interval over seeds (Student t, n − 1 degrees of freedom); "
             f"'(n=1)' marks a single finished run (no interval). Only finished trials enter the statistics. "
             f"★ / highlighted row: best {METRIC_NAMES.get(metric, metric)}; bold: best value of each column."
             f" Metrics use the {', '.join(feature_sets) or '—'} feature set."]
    notes.append("params: parameter count of the model (routing masks hold no parameters); GFLOPs: forward "
                 "multiply-accumulates per sample / 1e9 (the DiT paper's unit); images/s: median training "
                 "throughput per trial, averaged over seeds.")
    notes += [f"[{marker}] {text}" for marker, text in table.paper_notes]

    unfinished = trials.filter(pl.col("status") != "finished")
    s_headers, s_rows = display_trials(unfinished, table.varied)
    if trials.height == 0:
        status_line = "No trials yet."
    elif unfinished.height == 0:
        status_line = f"All {trials.height} trials finished."
    else:
        status_line = (f"{unfinished.height} of {trials.height} trials are not finished "
                       f"({', '.join(f'{counts[s]} {s}' for s in ('running', 'stopped', 'error') if counts[s])}); "
                       "stopped = ended early (ASHA or interrupted), no final metrics.")
    t_headers, t_rows = display_trials(trials, table.varied)

    figures = []

    def add(fig_id, title, caption, fig):
        if fig is not None:
            figures.append({"id": fig_id, "title": title, "caption": caption, "png": F.figure_png(fig)})

    for param in F.sweepable_params(table):
        from reports.tables import PARAM_SYMBOLS
        symbol = PARAM_SYMBOLS.get(param, param)
        add(f"vs-{param}", f"Metrics vs {symbol}",
            f"Mean ± 95% CI over seeds against {symbol}; dashed lines and bands: configurations without {symbol} "
            "(baselines). Paper analogue: DTR Fig. 4 (beta), Table 4 (alpha).",
            _safe(F.metric_vs_param, table, param))
    add("convergence", "Convergence", "FID-k (the in-training proxy, fixed sample seed) and training loss against "
        "the training step; one line per configuration (mean over seeds, band: seed range). Paper analogue: Fig. 5.",
        _safe(F.convergence_curves, table, records.curves))
    add("masks", "Routing masks", "Mask table of each routed configuration (rows: task t = 0 … T−1 from the top; "
        "white: channels the task reads). R-TR draws one table per block; the first is shown.",
        _safe(F.routing_masks, table, trials))
    add("loss-weights", "Loss weights", "w(t) of the loss weightings in this sweep, for their noise schedule.",
        _safe(F.loss_weight_curves, trials))
    add("expert-usage", "Expert usage", "Learned routing: how often each expert is selected at each t.",
        _safe(F.expert_usage, table, trials))
    add("bench-trend", "Regression-benchmark trend", "Step-time ratios of the scheduled speed benchmark "
        "(python -m platform.bench) over its history, mean ± noise band per run; dashed: the paper's +2 % "
        "routing-cost claim. From runs/bench/history.jsonl (also in the MLflow experiment 'benchmarks').",
        _safe(F.bench_trend, _bench_history()))
    samples = F.sample_images(table, trials)
    if samples:  # the trials' own PNGs, unresampled, in the HTML; a composed grid for the Markdown
        figures.append({"id": "samples", "title": "Samples", "caption": "One trial per configuration (the lowest "
                        "seed); every trial samples from the same noise and labels.",
                        "gallery": [(name, _read_bytes(path)) for name, path in samples[:F.MAX_PANELS]],
                        "png": F.figure_png(fig, dpi=80) if (fig := _safe(F.sample_grids, table, trials)) else None})

    title = f"Sweep report: {space.name if space else name}" + (f" ({budget.name})" if budget else "")
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return ReportContent(
        title=title, subtitle=f"{name} — generated {now}", header=header, warnings=warnings,
        table_headers=headers, table_rows=rows, table_best=best, table_notes=notes,
        status_line=status_line, status_headers=s_headers, status_rows=s_rows,
        trial_headers=t_headers, trial_rows=t_rows, figures=figures,
        footer=f"generated by python -m reports at {now} from {records.sweep_dir}")


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _safe(fn, *args):
    """A figure that fails to draw is left out of the report rather than failing it."""
    import logging
    try:
        return fn(*args)
    except Exception:
        logging.getLogger(__name__).warning("report figure %s failed", fn.__name__, exc_info=True)
        return None


def log_report_to_mlflow(sweep_dir: str, paths: list[str], tracking_uri: str | None = None) -> bool:
    """Log files to the sweep's MLflow parent run under ``report/``; False (never raises) if not possible."""
    from reports.records import mlflow_client, parent_run_id, quick_mlflow_http
    parent = parent_run_id(sweep_dir)
    if not parent:
        return False
    with quick_mlflow_http():
        try:
            client = mlflow_client(tracking_uri)
            if client is None:
                return False
            client.get_run(parent)
            for path in paths:
                if os.path.isdir(path):
                    client.log_artifacts(parent, path, artifact_path=f"report/{os.path.basename(path)}")
                elif os.path.exists(path):
                    client.log_artifact(parent, path, artifact_path="report")
        except Exception:
            return False
    return True


def _bench_history():
    """The full-scale speed-benchmark history, or None when the bench has never run here."""
    try:
        from trainers.bench.history import bench_history
        history = bench_history(scale="full")
    except Exception:  # a missing or unreadable history only hides the trend figure
        return None
    return history if history.height else None


def build_report(sweep_dir: str, *, log_to_mlflow: bool = True, use_mlflow: bool | None = None,
                 tracking_uri: str | None = None) -> dict:
    """Write ``report.html``, ``report.md`` and ``report_files/`` into ``sweep_dir``; log them to the
    sweep's MLflow parent run when ``log_to_mlflow`` (and reachable).  ``use_mlflow`` (default:
    ``log_to_mlflow``) also reads trial records from MLflow.  Returns
    ``{"html", "markdown", "figures": [...], "mlflow_logged": bool}``."""
    from reports.html import render_html
    from reports.markdown import render_markdown
    from reports.records import load_sweep
    from trainers.paths import mlflow_tracking_uri

    sweep_dir = os.path.abspath(sweep_dir)
    if not os.path.isdir(sweep_dir):
        raise FileNotFoundError(f"no sweep directory {sweep_dir}")
    use_mlflow = log_to_mlflow if use_mlflow is None else use_mlflow
    uri = tracking_uri or (mlflow_tracking_uri() if use_mlflow or log_to_mlflow else None)
    records = load_sweep(sweep_dir, use_mlflow=use_mlflow, tracking_uri=uri)
    report = assemble_report(records, tracking_uri=uri)

    fig_dir = os.path.join(sweep_dir, FIGURE_DIR)
    os.makedirs(fig_dir, exist_ok=True)
    figure_paths, written = {}, []
    for fig in report.figures:
        if not fig.get("png"):
            continue
        path = os.path.join(fig_dir, f"{fig['id']}.png")
        with open(path, "wb") as f:
            f.write(fig["png"])
        figure_paths[fig["id"]] = f"{FIGURE_DIR}/{fig['id']}.png"
        written.append(path)
    html_path, md_path = os.path.join(sweep_dir, REPORT_HTML), os.path.join(sweep_dir, REPORT_MD)
    for path, text in ((html_path, render_html(report)), (md_path, render_markdown(report, figure_paths))):
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    logged = log_report_to_mlflow(sweep_dir, [html_path, md_path, fig_dir], uri) if log_to_mlflow else False
    return {"html": html_path, "markdown": md_path, "figures": written, "mlflow_logged": logged}


__all__ = ["ReportContent", "assemble_report", "build_report", "log_report_to_mlflow"]
