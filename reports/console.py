"""The sweep's plain-text summary for the console (the sweep driver prints it when a sweep ends):
the configuration table without the paper and cost columns, one ``baseline <label>: ...`` line
of seed spread per baseline, the seed-noise band, the ``best:`` verdict and the warnings, with
the report's numbers and rules (``tables``, ``cells``, ``table_notes``): method fields that do
not apply print ``—``, and a configuration is called best only beyond seed noise."""
from __future__ import annotations

import polars as pl

from reports.cells import digits_for_table, display_config_table
from reports.schema import METRIC_NAMES
from reports.table_notes import baseline_spreads, best_verdict, noise_band, noise_warnings
from reports.tables import config_table

_LEFT_OUT = ("params (M)", "GFLOPs", "steps", "seconds to vanilla's FID-k")


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, the first left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def console_summary(trials: pl.DataFrame, *, metric: str = "fid", mode: str = "min",
                    baselines: list[str] | None = None) -> tuple[str, dict | None]:
    """(the summary text, the starred configuration's row of the configuration table or None when
    no configuration is better than the reference beyond seed noise).  ``trials``: the sweep's
    trial table (``records.trials_table`` / ``load_sweep(...).trials``)."""
    table = config_table(trials, metric=metric, mode=mode, baselines=baselines)
    headers, rows, _ = display_config_table(table)
    if not rows:
        return "no trials yet", None
    keep = [j for j, h in enumerate(headers) if h not in _LEFT_OUT and not h.startswith("paper ")]
    lines = [text_table([headers[j] for j in keep], [[row[j].text for j in keep] for row in rows])]
    name, digits = METRIC_NAMES.get(metric, metric), digits_for_table(table)
    lines += [f"baseline {spread} ({name} over seeds)" for spread in baseline_spreads(table, digits)]
    for c in table.comparisons:
        prefix = f"[{c.feature_set}] " if len(table.comparisons) > 1 else ""
        lines += [t for t in (noise_band(c, name, digits, prefix),) if t]
        lines += [f"best: {t}" for t in (best_verdict(c, name, digits, prefix),) if t]
    lines += [f"warning: {w}" for w in noise_warnings(table)]
    best = table.frame.filter(pl.col("best")).to_dicts()
    return "\n".join(lines), (best[0] if best else None)
