"""Metric against a swept parameter: mean ± 95% CI of each configuration over seeds, one line per
method label, the configurations without the parameter (vanilla, ...) as horizontal bands
(paper Fig. 4 for beta, Table 4 for alpha)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import polars as pl

from reports.figures.common import feature_note
from reports.methods import PARAM_SYMBOLS
from reports.schema import HIGHER_IS_BETTER, METRIC_NAMES, METRICS
from reports.tables import ConfigTable

NUMERIC_PARAMS = ("beta", "alpha", "routing_clusters", "uw_clusters", "min_snr_gamma", "p2_gamma", "experts",
                  "top_k", "prior_weight", "lr", "global_batch")


def sweepable_params(table: ConfigTable) -> list[str]:
    """Numeric varied parameters with at least two values among configurations that have results."""
    out = []
    frame = table.frame
    for p in table.varied:
        if p not in NUMERIC_PARAMS or p not in frame.columns:
            continue
        scored = frame.filter(pl.col(p).is_not_null() & (pl.col("n_finished") > 0))
        if scored[p].n_unique() >= 2:
            out.append(p)
    return out


def metric_vs_param(table: ConfigTable, param: str, metrics=METRICS) -> plt.Figure | None:
    """Mean ± 95% CI of each metric against ``param`` (one line per method label); the
    configurations without the parameter (vanilla, ...) as horizontal bands."""
    frame = table.frame
    if frame.height == 0 or param not in frame.columns:
        return None
    metrics = [m for m in metrics if frame[f"{m}_n"].sum() > 0]
    if not metrics:
        return None
    with_param = frame.filter(pl.col(param).is_not_null())
    without = frame.filter(pl.col(param).is_null() & (pl.col("n_finished") > 0))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics) + 0.6, 3.3), squeeze=False)
    cmap = plt.get_cmap("tab10")
    symbol = PARAM_SYMBOLS.get(param, param)
    for ax, m in zip(axes[0], metrics):
        for i, (label, group) in enumerate(with_param.group_by("label", maintain_order=True)):
            group = group.filter(pl.col(f"{m}_mean").is_not_null()).sort(param)
            if group.height == 0:
                continue
            x = group[param].to_numpy()
            y = group[f"{m}_mean"].to_numpy()
            err = group[f"{m}_ci"].fill_null(0.0).to_numpy()
            ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=3, lw=1.3, color=cmap(i % 10),
                        label=label[0] if isinstance(label, tuple) else label)
        for j, row in enumerate(without.filter(pl.col(f"{m}_mean").is_not_null()).iter_rows(named=True)):
            color = plt.get_cmap("Dark2")(j % 8)
            ax.axhline(row[f"{m}_mean"], color=color, ls="--", lw=1.1, label=row["name"])
            if row[f"{m}_ci"]:
                ax.axhspan(row[f"{m}_mean"] - row[f"{m}_ci"], row[f"{m}_mean"] + row[f"{m}_ci"], color=color,
                           alpha=0.12, lw=0)
        arrow = "↑" if HIGHER_IS_BETTER[m] else "↓"
        ax.set_title(f"{METRIC_NAMES[m]} {arrow} vs {symbol}", fontsize=10)
        ax.set_xlabel(symbol)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"metrics vs {symbol}: mean ± 95% CI over seeds{feature_note(table)}", fontsize=10)
    fig.tight_layout(rect=(0, 0.1 if handles else 0, 1, 1))
    return fig
