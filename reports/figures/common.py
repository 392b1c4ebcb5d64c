"""What every figure module shares: PNG encoding and decoding, one colour per configuration,
small-multiple grids."""
from __future__ import annotations

import io
import math

import matplotlib.pyplot as plt

from reports.tables import ConfigTable

MAX_PANELS = 16


def figure_png(fig, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def read_png(data: bytes):
    """An image array from PNG bytes."""
    return plt.imread(io.BytesIO(data))


def config_colors(table: ConfigTable) -> dict[str, tuple]:
    """One colour per configuration name, stable across the report's figures."""
    names = table.frame["name"].to_list() if table.frame.height else []
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def feature_note(table: ConfigTable) -> str:
    """`` (domain-fashion_mnist features)``: the feature sets of the table's metrics."""
    sets = sorted({f for f in table.frame["feature_set"].to_list() if f}) if table.frame.height else []
    return f" ({', '.join(sets)} features)" if sets else ""


def configurations(table: ConfigTable) -> list[dict]:
    """The table's configuration rows ([] for an empty table)."""
    return table.frame.to_dicts() if table.frame.height else []


def panel_grid(n: int, width: float, height: float, cols: int = 4):
    """(figure, axes) of ``n`` panels, at most ``cols`` a row, every axis off until drawn on."""
    cols = min(n, cols)
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(width * cols, height * math.ceil(n / cols)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes
