"""Samples: one trial's ``samples.png`` per configuration (the lowest seed), side by side; every
trial samples from the same noise and labels."""
from __future__ import annotations

import matplotlib.pyplot as plt
import polars as pl

from reports.figures.common import MAX_PANELS, configurations, panel_grid, read_png
from reports.tables import ConfigTable


def sample_images(table: ConfigTable, trials: pl.DataFrame, artifacts: dict) -> list[tuple[str, bytes]]:
    """(configuration name, samples.png bytes) — one trial per configuration, the lowest seed
    among those whose samples are in ``artifacts`` (trial name -> file name -> bytes)."""
    by_name = {r["name"]: r for r in trials.to_dicts()}
    out = []
    for row in configurations(table):
        members = sorted((by_name[n] for n in row["trials"]
                          if n in by_name and "samples.png" in artifacts.get(n, {})),
                         key=lambda r: (r.get("seed") is None, r.get("seed") or 0))
        if members:
            out.append((row["name"], artifacts[members[0]["name"]]["samples.png"]))
    return out


def sample_grids(images: list[tuple[str, bytes]]) -> plt.Figure | None:
    """The configurations' sample grids (``sample_images``) side by side."""
    images = images[:MAX_PANELS]
    if not images:
        return None
    fig, axes = panel_grid(len(images), 3.0, 3.3)
    for ax, (name, png) in zip(axes.flat, images):
        try:
            ax.imshow(read_png(png), interpolation="nearest")
        except Exception:
            ax.text(0.5, 0.5, "unreadable", ha="center", va="center")
        ax.set_title(name, fontsize=9)
    fig.suptitle("samples (EMA weights, fixed noise and labels per run)", fontsize=10)
    fig.tight_layout()
    return fig
