"""The figures a report shows, in order, with their titles and captions, as PNG bytes."""
from __future__ import annotations

import logging

import polars as pl

from reports.figures.bench import bench_trend
from reports.figures.common import MAX_PANELS, figure_png
from reports.figures.convergence import convergence_curves
from reports.figures.metrics import metric_vs_param, sweepable_params
from reports.figures.pareto import pareto_scatter
from reports.figures.routing import expert_usage, routing_masks
from reports.figures.samples import sample_grids, sample_images
from reports.figures.weights import loss_weight_curves
from reports.methods import PARAM_SYMBOLS
from reports.schema import SweepRecords
from reports.tables import ConfigTable


def _safe(fn, *args):
    """A figure that fails to draw is left out of the report rather than failing it."""
    try:
        return fn(*args)
    except Exception:
        logging.getLogger(__name__).warning("report figure %s failed", fn.__name__, exc_info=True)
        return None


def _study_views(records: SweepRecords) -> list[dict]:
    """Optuna's importance / parallel-coordinate / contour views of the sweep's study (reports/optuna_views.py)."""
    from reports.optuna_views import study_figures
    meta = records.meta
    name = f"{meta['space']}-{meta['budget']}" if meta.get("space") and meta.get("budget") else None
    objectives = meta.get("objectives") or []
    return study_figures(records.sweep_dir, name, objectives[0][0] if objectives else meta.get("param_metric"))


def report_figures(table: ConfigTable, records: SweepRecords, artifacts: dict[str, dict[str, bytes]],
                   bench_history: pl.DataFrame | None) -> list[dict]:
    """``[{"id", "title", "caption", "png"}, ...]`` (the samples entry also has ``"gallery"``:
    [(configuration name, the trial's own PNG bytes)]) for the figures the sweep has data for.
    ``artifacts``: trial name -> file name -> bytes (``records_files.read_artifacts``);
    ``bench_history``: ``bench_history.history_rows`` of the full-scale benchmark, or None."""
    trials = records.trials
    figures = []

    def add(fig_id, title, caption, fig):
        if fig is not None:
            figures.append({"id": fig_id, "title": title, "caption": caption, "png": figure_png(fig)})

    for param in sweepable_params(table):
        symbol = PARAM_SYMBOLS.get(param, param)
        add(f"vs-{param}", f"Metrics vs {symbol}",
            f"Mean ± 95% CI over seeds against {symbol}; dashed lines and bands: configurations without {symbol} "
            "(baselines). Paper analogue: DTR Fig. 4 (beta), Table 4 (alpha).",
            _safe(metric_vs_param, table, param))
    objectives = records.meta.get("objectives") or []
    if len(objectives) >= 2:
        names = " and ".join(f"{m} ({d})" for m, d in objectives[:2])
        add("pareto", "Pareto front", f"Every finished trial on {names}; red: the Pareto front (no other trial is at "
            "least as good on both and better on one), joined as the staircase it bounds; squares: baselines."
            + (f" The front is taken over all {len(objectives)} objectives; the plot shows the first two."
               if len(objectives) > 2 else ""), _safe(pareto_scatter, trials, objectives))
    for view in _safe(_study_views, records) or []:
        add(view["id"], view["title"], view["caption"], view["fig"])
    add("convergence", "Convergence", "FID-k (the in-training proxy, fixed sample seed) and training loss against "
        "the training step; one line per configuration (mean over seeds, band: seed range); dotted: vanilla's final "
        "FID-k, the target of the table's time-to-quality columns. Paper analogue: Fig. 5.",
        _safe(convergence_curves, table, records.curves))
    add("masks", "Routing masks", "Mask table of each routed configuration (rows: task t = 0 … T−1 from the top; "
        "white: channels the task reads). R-TR draws one table per block; the first is shown.",
        _safe(routing_masks, table, trials, artifacts))
    add("loss-weights", "Loss weights", "w(t) of the loss weightings in this sweep, for their noise schedule.",
        _safe(loss_weight_curves, trials))
    add("expert-usage", "Expert usage", "Learned routing: how often each expert is selected at each t.",
        _safe(expert_usage, table, artifacts))
    add("bench-trend", "Regression-benchmark trend", "Step-time ratios of the scheduled speed benchmark "
        "(python -m platform.bench) over its history, mean ± noise band per run; dashed: the paper's +2 % "
        "routing-cost claim. From runs/bench/history.jsonl (also in the MLflow experiment 'benchmarks').",
        _safe(bench_trend, bench_history) if bench_history is not None and bench_history.height else None)
    samples = sample_images(table, trials, artifacts)
    if samples:  # the trials' own PNGs, unresampled, in the HTML; a composed grid for the Markdown
        grid = _safe(sample_grids, samples)
        figures.append({"id": "samples", "title": "Samples", "caption": "One trial per configuration (the lowest "
                        "seed); every trial samples from the same noise and labels.",
                        "gallery": samples[:MAX_PANELS], "png": figure_png(grid, dpi=80) if grid is not None else None})
    return figures
