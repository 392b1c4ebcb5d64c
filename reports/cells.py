"""Tables as rows of display cells, shared by the HTML and Markdown writers: number formats
(``12.34 ± 0.56``, ``7.500 (n=1)``), the Δ-vs-reference and time-to-quality cells, the bold ★
row, muted paper columns."""
from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from reports.methods import PARAM_SYMBOLS, config_name, format_param, method_params
from reports.schema import HIGHER_IS_BETTER, METRIC_NAMES, METRICS
from reports.tables import ConfigTable

WITHIN_NOISE = "not shown (within seed noise)"
NOT_REACHED = "not reached"
TIME_TO_QUALITY_HEADERS = ["steps to vanilla's FID-k", "seconds to vanilla's FID-k"]


def delta_header(reference: str) -> str:
    """``Δ vs vanilla (95% CI)``."""
    return f"Δ vs {reference} (95% CI)"


@dataclass
class Cell:
    """One table cell as the writers print it."""

    text: str
    bold: bool = False
    muted: bool = False


def digits_for(x: float) -> int:
    return 1 if abs(x) >= 100 else 2 if abs(x) >= 10 else 3


def digits_for_table(table: ConfigTable) -> int:
    """Decimals of the differences of a table's main metric: those of its largest mean."""
    column = f"{table.metric}_mean"
    means = [abs(m) for m in table.frame[column].to_list() if m is not None] \
        if column in table.frame.columns else []
    return digits_for(max(means)) if means else 2


def format_number(x: float | None, digits: int | None = None) -> str:
    """``x`` with 1-3 decimals by magnitude (or ``digits``); ``—`` for no value."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits_for(x) if digits is None else digits}f}"


def format_mean_ci(mean: float | None, ci: float | None, n: int) -> str:
    """``12.34 ± 0.56`` (n >= 2), ``12.34 (n=1)``, or ``—`` with no value."""
    if mean is None or n == 0:
        return "—"
    digits = digits_for(mean)  # the interval gets the mean's precision
    if n == 1 or ci is None:
        return f"{format_number(mean, digits)} (n=1)"
    return f"{format_number(mean, digits)} ± {format_number(ci, digits)}"


def delta_text(row: dict, digits: int) -> str:
    """The Δ-vs-reference cell: ``-3.00 ± 1.92 *`` outside the seed-noise interval, else
    ``not shown (within seed noise)``; ``reference`` on the reference row, ``—`` without a value."""
    if row.get("is_reference"):
        return "reference"
    if row.get("delta") is None:
        return "—"
    if not row.get("delta_shown"):
        return WITHIN_NOISE
    return f"{row['delta']:+.{digits}f} ± {row['delta_ci']:.{digits}f} *"


def time_to_quality_text(row: dict, key: str) -> str:
    """A configuration's steps (``key`` = ``steps_to_vanilla_fid_k``) or seconds to vanilla's FID-k:
    the mean over the seeds that reached it, ``(k/n seeds)`` when not all did, ``not reached``."""
    seeds, reached = row.get("vanilla_fid_k_seeds") or 0, row.get("vanilla_fid_k_reached") or 0
    if not seeds:
        return "—"
    if not reached:
        return NOT_REACHED
    value = row.get(key)
    if value is None:
        return "—"
    text = f"{value:,.0f}" if key.startswith("steps") else f"{value:,.1f}"
    return text + (f" ({reached}/{seeds} seeds)" if reached < seeds else "")


def display_config_table(table: ConfigTable) -> tuple[list[str], list[list[Cell]], list[bool]]:
    """(headers, rows of cells, is-best per row) of the configuration table.  Paper columns appear
    beside each metric when any configuration has a paper value; cells carry the note's marker.
    Method fields that do not apply to a row's method are ``—``; only the ★ row is bold."""
    frame = table.frame
    if frame.height == 0:
        return [], [], []
    rows = frame.to_dicts()
    paper_cols = [m for m in METRICS if any(r.get(f"paper_{m}") is not None for r in rows)]
    shown_metrics = [m for m in METRICS if any(r.get(f"{m}_n") for r in rows) or m in paper_cols
                     or m in (table.metric, "label_accuracy")]
    reference = next((c.reference_label for c in table.comparisons if c.reference_label), None)
    ttq = table.reference_fid_k is not None
    digits = digits_for_table(table)
    headers = ["configuration", *[PARAM_SYMBOLS.get(p, p) for p in table.varied], "seeds", "status"]
    for m in shown_metrics:
        headers.append(METRIC_NAMES[m] + (" ↓" if not HIGHER_IS_BETTER[m] else " ↑"))
        headers += [f"paper {METRIC_NAMES[m]}"] if m in paper_cols else []
        headers += [delta_header(reference)] if m == table.metric and reference else []
    headers += TIME_TO_QUALITY_HEADERS if ttq else []
    show_fs = table.mixed_feature_sets
    headers += (["features"] if show_fs else []) + ["steps", "params (M)", "GFLOPs", "images/s"]
    out = []
    for r in rows:
        best = bool(r.get("best"))
        name = r["label"] + (" (baseline)" if r["kind"] == "baseline" else "") + (" ★" if best else "")
        cells = [Cell(name, bold=best)]
        cells += [Cell(format_param(r.get(p))) for p in table.varied]
        seeds = r.get("seeds") or []
        cells.append(Cell(", ".join(str(s) for s in seeds) if seeds else "—"))
        cells.append(Cell(r["status"], muted=r["n_finished"] == r["n_trials"]))
        for m in shown_metrics:
            mean = r.get(f"{m}_mean")
            cells.append(Cell(format_mean_ci(mean, r.get(f"{m}_ci"), r.get(f"{m}_n") or 0),
                              bold=best and m == table.metric))
            if m in paper_cols:
                value = r.get(f"paper_{m}")
                text = format_number(value) + (f" [{r['paper_marker']}]" if value is not None else "")
                cells.append(Cell(text if value is not None else "—", muted=True))
            if m == table.metric and reference:
                cells.append(Cell(delta_text(r, digits)))
        if ttq:
            cells += [Cell(time_to_quality_text(r, k)) for k in ("steps_to_vanilla_fid_k", "seconds_to_vanilla_fid_k")]
        if show_fs:
            cells.append(Cell(r.get("feature_set") or "—"))
        params = r.get("params")
        cells += [Cell(f"{r['steps']:,}" if r.get("steps") else "—"),
                  Cell(f"{params / 1e6:.2f}" if params else "—"),
                  Cell(format_number(r.get("gflops"), 3) if r.get("gflops") is not None else "—"),
                  Cell(format_number(r.get("images_per_s"), 1) if r.get("images_per_s") is not None else "—")]
        out.append(cells)
    return headers, out, [bool(r.get("best")) for r in rows]


def display_trials(trials: pl.DataFrame, varied: list[str],
                   reference_fid_k: float | None = None) -> tuple[list[str], list[list[Cell]]]:
    """Every trial (one row per seed), for the appendix and the status section.  Final metrics
    are shown for finished trials only: an unfinished trial's last FID-k is in its own column.
    With a ``reference_fid_k`` (vanilla's), the step at which the trial's FID-k first reached it."""
    headers = ["trial", "phase", "configuration", "seed", "status", "step", "FID", "Label acc.", "FID-k (last)",
               TIME_TO_QUALITY_HEADERS[0], "IS", "Precision", "Recall", "images/s", "detail"]
    out = []
    for r in trials.to_dicts():
        params = method_params(r)
        step = (f"{r['step'] or 0:,}/{r['steps']:,}" if r.get("steps")
                else f"{r['step']:,}" if r.get("step") else "—")
        final = [Cell(format_number(r.get(m) if r["status"] == "finished" else None)) for m in METRICS]
        reached = r.get("steps_to_vanilla_fid_k")
        ttq = ("—" if reference_fid_k is None or r.get("fid_k") is None
               else f"{reached:,}" if reached is not None else NOT_REACHED)
        out.append([Cell(r["name"]), Cell(r.get("phase") or "—"),
                    Cell(config_name(r.get("label") or "?", params, varied)),
                    Cell(str(r["seed"]) if r.get("seed") is not None else "—"),
                    Cell(r["status"], bold=r["status"] == "error"), Cell(step), *final[:2],
                    Cell(format_number(r.get("fid_k"))), Cell(ttq), *final[2:],
                    Cell(format_number(r.get("images_per_s"), 1)), Cell(r.get("detail") or "")])
    return headers, out
