"""Tables as rows of display cells, shared by the HTML and Markdown writers: number formats
(``12.34 ± 0.56``, ``7.500 (n=1)``), bold best values, muted paper columns."""
from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from reports.methods import PARAM_SYMBOLS, config_name, format_param, method_params
from reports.schema import HIGHER_IS_BETTER, METRIC_NAMES, METRICS
from reports.tables import ConfigTable


@dataclass
class Cell:
    """One table cell as the writers print it."""

    text: str
    bold: bool = False
    muted: bool = False


def _digits(x: float) -> int:
    return 1 if abs(x) >= 100 else 2 if abs(x) >= 10 else 3


def format_number(x: float | None, digits: int | None = None) -> str:
    """``x`` with 1-3 decimals by magnitude (or ``digits``); ``—`` for no value."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{_digits(x) if digits is None else digits}f}"


def format_mean_ci(mean: float | None, ci: float | None, n: int) -> str:
    """``12.34 ± 0.56`` (n >= 2), ``12.34 (n=1)``, or ``—`` with no value."""
    if mean is None or n == 0:
        return "—"
    digits = _digits(mean)  # the interval gets the mean's precision
    if n == 1 or ci is None:
        return f"{format_number(mean, digits)} (n=1)"
    return f"{format_number(mean, digits)} ± {format_number(ci, digits)}"


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
        cells += [Cell(format_param(r.get(p))) for p in table.varied]
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


def display_trials(trials: pl.DataFrame, varied: list[str]) -> tuple[list[str], list[list[Cell]]]:
    """Every trial (one row per seed), for the appendix and the status section.  Final metrics
    are shown for finished trials only: an unfinished trial's last FID-k is in its own column."""
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
                    *[Cell(format_number(r.get(m) if m == "fid_k" or r["status"] == "finished" else None))
                      for m in ("fid", "fid_k", "is_mean", "precision", "recall")],
                    Cell(format_number(r.get("images_per_s"), 1)), Cell(r.get("detail") or "")])
    return headers, out
