"""Task affinity between timesteps (ANT): the binned T x T matrix of loss-gradient cosines that
``python -m platform.affinity`` measures (trainers/diffusion/affinity.py), with the K intervals its
affinity clustering cuts, if given."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def affinity_figure(matrix, bins, clusters=None, title: str = "") -> plt.Figure:
    """``matrix`` (B, B) over ``bins`` (B inclusive timestep intervals [lo, hi]), drawn on the
    timestep axes (t = 0 top left); ``clusters``: timestep intervals outlined on the diagonal."""
    a = np.asarray(matrix, dtype=float)
    edges = [bins[0][0]] + [hi + 1 for _, hi in bins]
    fig, ax = plt.subplots(figsize=(5.4, 4.6))
    mesh = ax.pcolormesh(edges, edges, a, cmap="RdBu_r", vmin=-1.0, vmax=1.0, shading="flat")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(edges[-1], edges[0])
    for lo, hi in clusters or ():
        ax.add_patch(plt.Rectangle((lo, lo), hi + 1 - lo, hi + 1 - lo, fill=False, ec="black", lw=1.2))
    ax.set_xlabel("timestep t", fontsize=9)
    ax.set_ylabel("timestep t", fontsize=9)
    ax.tick_params(labelsize=8)
    cbar = fig.colorbar(mesh, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("cosine of loss gradients", fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    note = f"; {len(clusters)} affinity clusters outlined" if clusters else ""
    ax.set_title(title or f"task affinity, {len(bins)} bins of t{note}", fontsize=10)
    fig.tight_layout()
    return fig
