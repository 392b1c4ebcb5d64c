"""The regression benchmark's trend: its step-time ratios over the history
(``reports.bench_history.history_rows``), mean ± noise band per invocation."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

TREND_METRICS = ("dtr_step_ratio", "rtr_step_ratio", "switch_step_ratio", "vanilla_step_per_calib")


def bench_trend(history: pl.DataFrame, metrics=TREND_METRICS) -> plt.Figure | None:
    """Regression-benchmark ratios over time (``reports.bench_history.history_rows``): mean ± noise
    band per invocation; red markers are invocations the gate called a regression."""
    if history is None or history.height == 0:
        return None
    present = [m for m in metrics if m in set(history["metric"].to_list())]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], present):
        rows = history.filter(pl.col("metric") == metric).sort("time")
        x = np.arange(rows.height)
        mean = rows["mean"].to_numpy().astype(float)
        band = np.nan_to_num(rows["band"].to_numpy().astype(float))
        ax.errorbar(x, mean, yerr=band, fmt="o-", ms=3, capsize=2)
        bad = np.array([s == "REGRESSION" for s in rows["status"].to_list()])
        if bad.any():
            ax.plot(x[bad], mean[bad], "o", color="red", label="regression")
            ax.legend(fontsize=7)
        if metric.endswith("_step_ratio"):
            ax.axhline(1.02, color="grey", ls="--", lw=0.8)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("bench run (oldest → newest)")
        ax.set_xticks(x if len(x) <= 10 else x[:: max(1, len(x) // 10)])
    fig.tight_layout()
    return fig
