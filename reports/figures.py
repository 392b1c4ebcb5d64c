"""Figures of a sweep (matplotlib, Agg): each function takes records/tables and returns a Figure,
or None when the sweep has nothing to show for it (the report then leaves the figure out).

- ``metric_vs_param``: metric vs beta / alpha / K with 95% error bars, baselines as bands (paper Fig. 4, Table 4)
- ``convergence_curves``: FID-k vs training step per configuration, and the training loss (paper Fig. 5)
- ``routing_masks``: each routed configuration's mask table (rebuilt, or the trial's routing_mask.png)
- ``loss_weight_curves``: w(t) of the weightings present, over t (methods.md §2); none if all are vanilla
- ``sample_grids``: the trials' samples.png side by side
- ``expert_usage``: learned routing's expert usage over t, when a trial saved ``expert_usage.npy|json``
"""
from __future__ import annotations

import io
import json
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from reports.records import METRICS  # noqa: E402
from reports.tables import HIGHER_IS_BETTER, METRIC_NAMES, PARAM_SYMBOLS, ConfigTable  # noqa: E402

MAX_PANELS = 16
NUMERIC_PARAMS = ("beta", "alpha", "routing_clusters", "uw_clusters", "min_snr_gamma", "p2_gamma", "experts",
                  "top_k", "prior_weight", "lr", "global_batch")


def figure_png(fig, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def config_colors(table: ConfigTable) -> dict[str, tuple]:
    """One colour per configuration name, stable across the report's figures."""
    names = table.frame["name"].to_list() if table.frame.height else []
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _feature_note(table: ConfigTable) -> str:
    sets = sorted({f for f in table.frame["feature_set"].to_list() if f}) if table.frame.height else []
    return f" ({', '.join(sets)} features)" if sets else ""


# -- metric vs a swept parameter ------------------------------------------------------------------

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
    fig.suptitle(f"metrics vs {symbol}: mean ± 95% CI over seeds{_feature_note(table)}", fontsize=10)
    fig.tight_layout(rect=(0, 0.1 if handles else 0, 1, 1))
    return fig


# -- convergence ----------------------------------------------------------------------------------

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
        if column == "fid_k":
            ax.set_title(f"FID-k during training{_feature_note(table)}", fontsize=10)
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


# -- routing masks --------------------------------------------------------------------------------

def _channels(model: str | None) -> int | None:
    from trainers.models import DIT_SIZES
    if model and model.startswith("DiT-"):
        size = model[4:].split("/")[0]
        return DIT_SIZES.get(size, (None, None))[1]
    return None


def mask_table(row: dict) -> np.ndarray | None:
    """The (T, C) mask of a configuration's first routed block, rebuilt from its fields
    (``RoutingSpec(...).mask_table``); None for unrouted / learned / unknown-width models."""
    from trainers.routing import RoutingSpec
    channels = _channels(row.get("model"))
    routing = row.get("routing")
    if not channels or routing in (None, "none", "learned", "learned_window"):
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
    for row in table.frame.to_dicts() if table.frame.height else []:
        member = next((by_name[n] for n in row["trials"] if n in by_name), None)
        if member and member.get("routing") not in (None, "none") and not (
                member.get("routing") in ("dtr", "random", "cdtr") and member.get("beta") == 1.0):
            out.append((row["name"], member))
    return out


def routing_masks(table: ConfigTable, trials: pl.DataFrame) -> plt.Figure | None:
    """Small multiples of the mask tables (rows: task t, columns: channel; white = read), paper
    Fig. 2 style; the trial's routing_mask.png stands in when a table cannot be rebuilt."""
    panels = []
    for name, member in routed_configs(table, trials)[:MAX_PANELS]:
        mask = mask_table(member)
        if mask is not None:
            panels.append((name, mask))
        elif member.get("routing_mask_png") and os.path.exists(member["routing_mask_png"]):
            panels.append((name, plt.imread(member["routing_mask_png"])))
    if not panels:
        return None
    cols = min(len(panels), 4)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
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


# -- loss weights ----------------------------------------------------------------------------------

def weighting_settings(trials: pl.DataFrame) -> list[dict]:
    """Distinct (weighting, gamma, k, schedule, T) of the trials, non-vanilla weightings only."""
    seen, out = set(), []
    for r in trials.to_dicts():
        kind = r.get("weighting")
        if kind in (None, "vanilla"):
            continue
        gamma = r.get("min_snr_gamma") if kind == "min_snr" else r.get("p2_gamma") if kind == "p2" else None
        key = (kind, gamma, r.get("p2_k") if kind == "p2" else None, r.get("schedule") or "linear",
               int(r.get("num_timesteps") or 1000))
        if key not in seen:
            seen.add(key)
            out.append(dict(zip(("kind", "gamma", "k", "schedule", "T"), key)))
    return out


def loss_weight_curves(trials: pl.DataFrame) -> plt.Figure | None:
    """w(t) of every weighting in the sweep (vanilla = 1 for reference); ANT-UW's weights are
    learned per cluster, so it is drawn at its uniform starting value with a note."""
    import torch
    from trainers.diffusion import GaussianDiffusion
    from trainers.weighting import loss_weight
    settings = weighting_settings(trials)
    if not settings:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    drawn = set()
    for s in settings:
        snr = GaussianDiffusion(s["schedule"], s["T"]).snr
        t = np.arange(s["T"])
        if ("vanilla", s["schedule"], s["T"]) not in drawn:
            drawn.add(("vanilla", s["schedule"], s["T"]))
            ax.plot(t, np.ones_like(t, dtype=float), color="grey", ls=":", lw=1.2, label="vanilla (w = 1)")
        kwargs = {"gamma": s["gamma"]} if s["gamma"] else {}
        if s["kind"] == "p2" and s["k"] is not None:
            kwargs["k"] = s["k"]
        w = loss_weight(s["kind"], torch.as_tensor(snr), **kwargs).numpy()
        name = {"min_snr": "Min-SNR", "p2": "P2", "ant_uw": "ANT-UW (learned per cluster; init 1)"}[s["kind"]]
        if s["gamma"]:
            name += f" γ={s['gamma']:g}"
        if s["kind"] == "p2" and s["k"] is not None:
            name += f" k={s['k']:g}"
        ax.plot(t, w, lw=1.5, label=f"{name} ({s['schedule']})")
    ax.set_yscale("log")
    ax.set_xlabel("timestep t")
    ax.set_ylabel("loss weight w(t)")
    ax.set_title("loss weight over t (ε-prediction, SNR_t = ᾱ_t / (1 − ᾱ_t))", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


# -- samples ---------------------------------------------------------------------------------------

def sample_images(table: ConfigTable, trials: pl.DataFrame) -> list[tuple[str, str]]:
    """(configuration name, samples.png path) — one trial per configuration, the lowest seed."""
    by_name = {r["name"]: r for r in trials.to_dicts()}
    out = []
    for row in table.frame.to_dicts() if table.frame.height else []:
        members = sorted((by_name[n] for n in row["trials"] if n in by_name and by_name[n].get("samples_png")),
                         key=lambda r: (r.get("seed") is None, r.get("seed") or 0))
        if members and os.path.exists(members[0]["samples_png"]):
            out.append((row["name"], members[0]["samples_png"]))
    return out


def sample_grids(table: ConfigTable, trials: pl.DataFrame) -> plt.Figure | None:
    """The configurations' sample grids side by side (same sampling seed in every trial)."""
    images = sample_images(table, trials)[:MAX_PANELS]
    if not images:
        return None
    cols = min(len(images), 4)
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, path) in zip(axes.flat, images):
        try:
            ax.imshow(plt.imread(path), interpolation="nearest")
        except Exception:
            ax.text(0.5, 0.5, "unreadable", ha="center", va="center")
        ax.set_title(name, fontsize=9)
    fig.suptitle("samples (EMA weights, fixed noise and labels per run)", fontsize=10)
    fig.tight_layout()
    return fig


# -- learned routing: expert usage ------------------------------------------------------------------

def load_expert_usage(path: str) -> np.ndarray | None:
    """A (T, E) usage table from ``expert_usage.npy`` or ``.json`` (a list of rows, or {"usage": rows})."""
    try:
        if path.endswith(".npy"):
            table = np.load(path)
        else:
            with open(path) as f:
                data = json.load(f)
            table = np.asarray(data.get("usage") if isinstance(data, dict) else data, dtype=float)
    except Exception:
        return None
    if table.ndim == 3:  # (depth, T, E): mean over blocks
        table = table.mean(0)
    return table if table.ndim == 2 and table.size else None


def expert_usage(table: ConfigTable, trials: pl.DataFrame) -> plt.Figure | None:
    """Expert usage over t of each learned-routing configuration that recorded one (else None)."""
    by_name = {r["name"]: r for r in trials.to_dicts()}
    panels = []
    for row in table.frame.to_dicts() if table.frame.height else []:
        member = next((by_name[n] for n in row["trials"] if n in by_name and by_name[n].get("expert_usage")), None)
        usage = load_expert_usage(member["expert_usage"]) if member else None
        if usage is not None:
            panels.append((row["name"], usage))
    panels = panels[:MAX_PANELS]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (name, usage) in zip(axes[0], panels):
        t = np.arange(usage.shape[0])
        ax.stackplot(t, usage.T, labels=[f"expert {e}" for e in range(usage.shape[1])], alpha=0.85)
        ax.set_xlabel("timestep t")
        ax.set_ylabel("selections (mean over blocks)")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7, frameon=False, loc="upper right")
    fig.suptitle("learned routing: expert usage over t", fontsize=10)
    fig.tight_layout()
    return fig


TREND_METRICS = ("dtr_step_ratio", "rtr_step_ratio", "switch_step_ratio", "vanilla_step_per_calib")


def bench_trend(history: pl.DataFrame, metrics=TREND_METRICS) -> plt.Figure | None:
    """Regression-benchmark ratios over time (``trainers.bench.history.bench_history``): mean ± noise
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
