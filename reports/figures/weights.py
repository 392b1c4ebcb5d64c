"""Loss weights: w(t) of every weighting in the sweep over t, for its noise schedule
(docs/loss_weighting.md)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import polars as pl


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

    from trainers.diffusion.gaussian import GaussianDiffusion
    from trainers.diffusion.weighting import loss_weight
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
