"""Routing figures: the mask table of each routed configuration (paper Fig. 2 style) and, for
learned routing, how often each expert is selected at each t."""
from __future__ import annotations

import io
import json

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from reports.figures.common import MAX_PANELS, configurations, panel_grid, read_png
from reports.methods import effective_routing
from reports.schema import EXPERT_USAGE_FILES
from reports.tables import ConfigTable


def _channels(model: str | None) -> int | None:
    from trainers.models import DIT_SIZES
    if model and model.startswith("DiT-"):
        size = model[4:].split("/")[0]
        return DIT_SIZES.get(size, (None, None))[1]
    return None


def mask_table(row: dict) -> np.ndarray | None:
    """The (T, C) mask of a configuration's first routed block, rebuilt from its fields
    (``RoutingSpec(...).mask_table``); None for unrouted / learned / unknown-width models and for
    MaxRoaming (its tables change during training: the run's routing_mask.png shows its last ones)."""
    from trainers.routing.spec import RoutingSpec
    channels = _channels(row.get("model"))
    routing = effective_routing(row)
    if not channels or routing in (None, "none", "learned", "learned_window", "maxroaming"):
        return None
    try:
        spec = RoutingSpec(kind=routing, beta=float(row.get("beta") or 0.8), alpha=float(row.get("alpha") or 4.0),
                           clusters=int(row.get("routing_clusters") or 4),
                           cluster_method=row.get("routing_cluster_method") or "equal",
                           schedule=row.get("schedule") or "linear", seed=int(row.get("routing_seed") or 0))
        table = spec.mask_table(int(row.get("num_timesteps") or 1000), channels, depth=1)
    except Exception:
        return None
    return None if table is None else table[0].float().numpy()


def routed_configs(table: ConfigTable, trials: pl.DataFrame) -> list[tuple[str, dict]]:
    """(configuration name, a representative trial row) of every routed configuration."""
    by_name = {r["name"]: r for r in trials.to_dicts()}
    out = []
    for row in configurations(table):
        member = next((by_name[n] for n in row["trials"] if n in by_name), None)
        if member and effective_routing(member) not in (None, "none"):
            out.append((row["name"], member))
    return out


def routing_masks(table: ConfigTable, trials: pl.DataFrame, artifacts: dict | None = None) -> plt.Figure | None:
    """Small multiples of the mask tables (rows: task t, columns: channel; white = read); the
    trial's routing_mask.png (from ``artifacts``: trial name -> file name -> bytes) stands in
    when a table cannot be rebuilt."""
    panels = []
    for name, member in routed_configs(table, trials)[:MAX_PANELS]:
        mask = mask_table(member)
        png = (artifacts or {}).get(member["name"], {}).get("routing_mask.png")
        if mask is not None:
            panels.append((name, mask))
        elif png:
            panels.append((name, read_png(png)))
    if not panels:
        return None
    fig, axes = panel_grid(len(panels), 3.3, 2.9)
    for ax, (name, image) in zip(axes.flat, panels):
        ax.axis("on")
        if image.ndim == 2:
            ax.imshow(image, aspect="auto", cmap="Greys_r", interpolation="nearest", vmin=0, vmax=1)
            ax.set_xlabel("channel", fontsize=8)
            ax.set_ylabel("task t", fontsize=8)
        else:
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle("routing masks (first routed block; white = channel read by task t)", fontsize=10)
    fig.tight_layout()
    return fig


def load_expert_usage(filename: str, data: bytes) -> np.ndarray | None:
    """A (T, E) usage table from the bytes of ``expert_usage.npy`` (``np.save`` of
    ``DiT.expert_usage()``: (T, E), or (depth, T, E) per block, averaged here) or
    ``expert_usage.json`` (a list of rows, {"usage": rows}, or the record a Switch-DiT run writes,
    trainers/models/expert_usage.py: its ``selection``, (depth, bins, E), averaged over blocks)."""
    record = load_usage_record(filename, data)
    return None if record is None else record["selection"]


def load_usage_record(filename: str, data: bytes) -> dict | None:
    """{"t": x positions (bin centres, or 0..T-1), "selection": (n, E) top-k selections (mean over
    blocks), "gate": (n, E) mean gate probabilities or None} of an expert-usage file."""
    try:
        gate = None
        if filename.endswith(".npy"):
            table = np.load(io.BytesIO(data))
            parsed = {}
        else:
            parsed = json.loads(data)
            if not isinstance(parsed, dict):
                parsed = {"usage": parsed}
            table = np.asarray(parsed.get("selection", parsed.get("usage")), dtype=float)
            if parsed.get("gate_probs") is not None:
                gate = np.asarray(parsed["gate_probs"], dtype=float)
                gate = gate.mean(0) if gate.ndim == 3 else gate
    except Exception:
        return None
    if table.ndim == 3:  # (depth, T or bins, E): mean over blocks
        table = table.mean(0)
    if table.ndim != 2 or not table.size:
        return None
    bins = parsed.get("bins")
    t = (np.asarray([(lo + hi) / 2 for lo, hi in bins], dtype=float) if bins and len(bins) == table.shape[0]
         else np.arange(table.shape[0], dtype=float))
    return {"t": t, "selection": table, "gate": gate if gate is not None and gate.shape == table.shape else None}


def _usage_of(files: dict) -> dict | None:
    found = next((f for f in EXPERT_USAGE_FILES if f in files), None)
    return load_usage_record(found, files[found]) if found else None


def expert_usage(table: ConfigTable, artifacts: dict) -> plt.Figure | None:
    """Expert usage over t of each configuration with a trial that recorded one (in ``artifacts``:
    trial name -> file name -> bytes), else None: top-k selections per timestep (bin), mean over
    blocks, and below them the mean gate probabilities when the file has them (the
    ``expert_usage.json`` a Switch-DiT run writes at its final evaluation)."""
    panels = []
    for row in configurations(table):
        usage = next((u for n in row["trials"] if (u := _usage_of(artifacts.get(n, {}))) is not None), None)
        if usage is not None:
            panels.append((row["name"], usage))
    panels = panels[:MAX_PANELS]
    if not panels:
        return None
    rows = 2 if any(u["gate"] is not None for _, u in panels) else 1
    fig, axes = plt.subplots(rows, len(panels), figsize=(4.2 * len(panels), 3.2 * rows), squeeze=False)
    for col, (name, usage) in enumerate(panels):
        parts = [("selection", "selections (mean over blocks)"), ("gate", "gate probability (mean over blocks)")]
        for r, (key, ylabel) in enumerate(parts[:rows]):
            ax = axes[r][col]
            if usage[key] is None:
                ax.axis("off")
                continue
            values = usage[key]
            ax.stackplot(usage["t"], values.T, labels=[f"expert {e}" for e in range(values.shape[1])], alpha=0.85)
            ax.set_xlabel("timestep t")
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_title(name, fontsize=9)
            ax.legend(fontsize=7, frameon=False, loc="upper right")
    fig.suptitle("learned routing: expert usage over t", fontsize=10)
    fig.tight_layout()
    return fig
