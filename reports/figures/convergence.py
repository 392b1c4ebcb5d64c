"""Convergence: FID-k (the in-training proxy) and the training loss against the training step,
one line per configuration (mean over seeds, band: seed range), paper Fig. 5."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from reports.figures.common import config_colors, feature_note
from reports.tables import ConfigTable


def _ema(values: np.ndarray, weight: float = 0.8) -> np.ndarray:
    out, acc = np.empty_like(values), None
    for i, v in enumerate(values):
        acc = v if acc is None else weight * acc + (1 - weight) * v
        out[i] = acc
    return out


def _mean_curve(curves: pl.DataFrame, names: list[str], column: str) -> tuple[np.ndarray, ...] | None:
    part = curves.filter(pl.col("name").is_in(names) & pl.col(column).is_not_null())
    if part.height == 0:
        return None
    agg = part.group_by("step").agg(pl.col(column).mean().alias("mean"), pl.col(column).min().alias("lo"),
                                    pl.col(column).max().alias("hi"), pl.len().alias("n")).sort("step")
    return (agg["step"].to_numpy(), agg["mean"].to_numpy(), agg["lo"].to_numpy(), agg["hi"].to_numpy(),
            agg["n"].to_numpy())


def convergence_curves(table: ConfigTable, curves: pl.DataFrame) -> plt.Figure | None:
    """FID-k vs training step per configuration (mean over seeds, band = seed min..max) and the
    EMA-smoothed training loss; None when no trial logged either."""
    if table.frame.height == 0 or curves.height == 0:
        return None
    colors = config_colors(table)
    rows = table.frame.to_dicts()
    has_fid = curves["fid_k"].drop_nulls().len() > 0
    has_loss = curves["loss"].drop_nulls().len() > 0
    panels = [c for c, ok in (("fid_k", has_fid), ("loss", has_loss)) if ok]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 0.8, 3.6), squeeze=False)
    for ax, column in zip(axes[0], panels):
        for row in rows:
            curve = _mean_curve(curves, row["trials"], column)
            if curve is None:
                continue
            step, mean, lo, hi, n = curve
            if column == "loss":
                mean, lo, hi = _ema(mean), _ema(lo), _ema(hi)
            style = "--" if row["kind"] == "baseline" else "-"
            ax.plot(step, mean, style, color=colors[row["name"]], lw=1.4,
                    marker="o" if column == "fid_k" else None, ms=3, label=row["name"])
            if (n > 1).any():
                ax.fill_between(step, lo, hi, color=colors[row["name"]], alpha=0.15, lw=0)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        if column == "fid_k" and table.reference_fid_k is not None:  # the time-to-quality target
            ax.axhline(table.reference_fid_k, color="0.35", ls=":", lw=1.0, label="vanilla's final FID-k")
        if column == "fid_k":
            ax.set_title(f"FID-k during training{feature_note(table)}", fontsize=10)
            ax.set_ylabel("FID-k ↓")
        else:
            ax.set_title("training loss (EMA-smoothed)", fontsize=10)
            ax.set_ylabel("loss")
            ax.set_yscale("log")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
