"""The Pareto scatter of a multi-objective sweep: every finished trial on its first two objectives,
the front (reports/pareto.py) highlighted and joined as the staircase it bounds, baselines marked."""
from __future__ import annotations

import matplotlib.pyplot as plt
import polars as pl

from reports.pareto import Objectives, candidates, pareto_front
from reports.schema import METRIC_NAMES


def pareto_scatter(trials: pl.DataFrame, objectives: Objectives) -> plt.Figure | None:
    """None with fewer than two objectives or no finished trial with values of both."""
    if len(objectives) < 2:
        return None
    (mx, dx), (my, dy) = objectives[:2]
    pool = candidates(trials, objectives)
    if not pool.height:
        return None
    front = pareto_front(trials, objectives)
    on_front = set(front["name"].to_list())
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    rest = pool.filter(~pl.col("name").is_in(list(on_front)))
    for part, style in ((rest.filter(pl.col("phase") != "baselines"), dict(c="#9a9a9a", marker="o", label="trial")),
                        (rest.filter(pl.col("phase") == "baselines"), dict(c="#9a9a9a", marker="s",
                                                                           label="baseline"))):
        if part.height:
            ax.scatter(part[mx].to_list(), part[my].to_list(), s=28, alpha=0.8, **style)
    ordered = front.sort(mx, descending=dx == "max")
    xs, ys = ordered[mx].to_list(), ordered[my].to_list()
    ax.step(xs, ys, where="post", color="#c0392b", lw=1.2, alpha=0.7)
    ax.scatter(xs, ys, s=60, c="#c0392b", edgecolors="black", linewidths=0.6, zorder=3,
               label=f"Pareto front ({len(xs)})")
    for row in ordered.iter_rows(named=True):
        ax.annotate(row.get("label") or row["name"], (row[mx], row[my]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    arrow = {"min": "lower is better", "max": "higher is better"}
    ax.set_xlabel(f"{METRIC_NAMES.get(mx, mx)} ({arrow[dx]})")
    ax.set_ylabel(f"{METRIC_NAMES.get(my, my)} ({arrow[dy]})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
