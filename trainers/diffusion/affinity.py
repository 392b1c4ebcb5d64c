"""Measured task affinity between timesteps (ANT, NeurIPS 2023), binned; docs/interval_clustering.md.

ANT's affinity of tasks t and t' is the cosine similarity of their loss gradients with respect to
the shared parameters (in a DiT every trainable parameter is shared by all timesteps).  Estimating
all T x T pairs would take T backward passes per estimate, so the timesteps are cut into ``bins``
contiguous intervals of equal width (``equal_width_clusters``; 50 bins of 20 over T = 1000 by
default) and the matrix is estimated between bins:

* one fixed batch of n images x0 (with their labels), one fixed noise draw ``eps`` and one
  fixed offset ``u_i`` in [0, 1) per image are used for *every* bin, so two bins differ only in
  their timesteps (common random numbers: much of the sampling noise cancels in the cosine);
* image i is diffused to ``t_i = lo_b + floor(u_i * width_b)`` inside bin b;
* ``g_b`` = gradient of the batch mean of the diffusion loss (MSE, plus the VB term with a learned
  variance; no loss weighting) with respect to every trainable parameter, model in eval mode;
* ``A[a, b] = <g_a, g_b> / (|g_a| |g_b|)`` in float64: symmetric with unit diagonal.

The bins' gradients are held at once (on the CPU): ``bins x parameters x 4`` bytes (DiT-T/4, 50 bins:
~0.3 GB; DiT-B/2: 26 GB, so use fewer bins there).

Files: ``FILE.npy`` holds A (bins, bins) float64, ``FILE.json`` the settings (``num_timesteps``,
``bins`` as inclusive [lo, hi] timestep intervals, samples, seed, weights) and the checkpoint it
came from.  :func:`affinity_clusters` turns a binned matrix into K timestep intervals: the interval
clustering runs over the bins (cost ``-sum A[c, .]`` with c the middle bin) and every bin interval
maps back to the timesteps its bins cover.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from trainers.diffusion.interval_clustering import equal_width_clusters, interval_clusters

Intervals = list[tuple[int, int]]


def affinity_paths(path: str) -> tuple[str, str]:
    """(matrix .npy, settings .json) of an affinity file name given with or without ``.npy``."""
    npy = path if path.endswith(".npy") else path + ".npy"
    return npy, npy[:-4] + ".json"


def bin_timesteps(bins: Intervals, u: torch.Tensor) -> torch.Tensor:
    """(B, n) int64: sample i's timestep in bin b, ``lo_b + floor(u_i * width_b)``."""
    lo = torch.tensor([a for a, _ in bins], dtype=torch.long)
    width = torch.tensor([b - a + 1 for a, b in bins], dtype=torch.float64)
    offset = (u.double()[None, :] * width[:, None]).floor().long().clamp_max(width.long()[:, None] - 1)
    return lo[:, None] + offset


def cosine_matrix(grads: torch.Tensor) -> np.ndarray:
    """(B, B) cosine similarities of the rows of ``grads`` (B, P), in float64."""
    g = grads.double()
    norms = g.norm(dim=1)
    if (norms == 0).any():
        raise ValueError(f"the loss gradient of bin(s) {norms.eq(0).nonzero().flatten().tolist()} is zero: "
                         "no affinity can be measured (is the model trainable?)")
    unit = g / norms[:, None]
    return (unit @ unit.T).cpu().numpy()


def affinity_matrix(model: torch.nn.Module, diffusion, x0: torch.Tensor, y: torch.Tensor | None, bins: int,
                    seed: int = 0) -> tuple[np.ndarray, Intervals]:
    """Binned task-affinity matrix (bins, bins) of ``model`` on the batch ``x0`` (labels ``y``, None for
    an unconditional model) and the bins as inclusive timestep intervals (module docstring)."""
    num_timesteps = diffusion.num_timesteps
    if not 1 <= int(bins) <= num_timesteps:
        raise ValueError(f"bins must be in [1, num_timesteps={num_timesteps}], got {bins}")
    bounds = equal_width_clusters(num_timesteps, int(bins))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    device = params[0].device
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(x0.shape, generator=gen).to(device)
    steps = bin_timesteps(bounds, torch.rand(x0.shape[0], generator=gen)).to(device)
    x0 = x0.float().to(device)
    kwargs = {"y": y.to(device)} if y is not None else {}
    was_training = model.training
    model.eval()  # no label dropout, no Switch-DiT prior loss: the same function for every bin
    grads = torch.empty((len(bounds), sum(p.numel() for p in params)), dtype=torch.float32)
    try:
        for b in range(len(bounds)):
            terms = diffusion.training_losses(model, x0, steps[b], model_kwargs=kwargs, noise=noise)
            loss = (terms["mse"] + terms["vb"]).mean()
            row = torch.autograd.grad(loss, params)
            grads[b] = torch.cat([g.reshape(-1).float() for g in row]).cpu()
    finally:
        model.train(was_training)
    return cosine_matrix(grads), bounds


def save_affinity(path: str, matrix: np.ndarray, bins: Intervals, settings: dict) -> tuple[str, str]:
    """Write ``FILE.npy`` (the matrix) and ``FILE.json`` (``settings`` + the bins); returns both paths."""
    npy, meta = affinity_paths(path)
    os.makedirs(os.path.dirname(os.path.abspath(npy)), exist_ok=True)
    np.save(npy, np.asarray(matrix, dtype=np.float64))
    with open(meta, "w") as f:
        json.dump({**settings, "bins": [list(b) for b in bins]}, f, indent=1)
    return npy, meta


def load_affinity(path: str) -> tuple[np.ndarray, Intervals, dict]:
    """(matrix, bins, settings) of an affinity file; ValueError (one line) when it is unusable."""
    npy, meta = affinity_paths(path)
    for name in (npy, meta):
        if not os.path.exists(name):
            raise ValueError(f"affinity file {name} not found (make it with python -m platform.affinity "
                             "--run-dir RUN --bins 50 --out FILE)")
    with open(meta) as f:
        settings = json.load(f)
    bins = [(int(a), int(b)) for a, b in settings.get("bins", [])]
    matrix = np.load(npy, mmap_mode="r")
    if matrix.shape != (len(bins), len(bins)) or not bins:
        raise ValueError(f"affinity file {npy}: matrix shape {matrix.shape} does not match its {len(bins)} bins")
    return np.asarray(matrix, dtype=np.float64), bins, settings


def check_affinity_file(path: str, num_timesteps: int) -> None:
    """Raise ValueError (one line) unless ``path`` is an affinity file measured with ``num_timesteps``."""
    if not path:
        raise ValueError("uw_cluster_method='affinity' needs uw_affinity_file (python -m platform.affinity "
                         "--run-dir RUN --bins 50 --out FILE makes one)")
    _, bins, settings = load_affinity(path)
    if int(settings.get("num_timesteps", -1)) != int(num_timesteps):
        raise ValueError(f"affinity file {path} was measured with T={settings.get('num_timesteps')}; this run has "
                         f"num_timesteps={num_timesteps}")
    if bins[0][0] != 0 or bins[-1][1] != num_timesteps - 1:
        raise ValueError(f"affinity file {path}: its bins cover timesteps {bins[0][0]}..{bins[-1][1]}, not "
                         f"0..{num_timesteps - 1}")


def affinity_clusters(matrix, bins: Intervals, k: int, lo: int = 0, hi: int | None = None) -> Intervals:
    """K contiguous timestep intervals covering [lo, hi] (default: all the bins cover) from a binned
    affinity matrix: the bins that overlap [lo, hi] are clustered (``interval_clusters(...,
    method="affinity")``), then each bin interval becomes the timesteps of its bins, clipped to [lo, hi]."""
    hi = bins[-1][1] if hi is None else hi
    inside = [i for i, (a, b) in enumerate(bins) if b >= lo and a <= hi]
    if not inside or not 1 <= k <= len(inside):
        raise ValueError(f"{k} clusters need at least {k} affinity bins inside timesteps [{lo}, {hi}]; the file's "
                         f"bins hold {len(inside)} there (measure it with more --bins)")
    sub = np.asarray(matrix, dtype=np.float64)[np.ix_(inside, inside)]
    out = []
    for first, last in interval_clusters(sub, k, method="affinity"):
        out.append((max(bins[inside[first]][0], lo), min(bins[inside[last]][1], hi)))
    return out


def affinity_file_clusters(path: str, k: int, lo: int, hi: int, num_timesteps: int) -> Intervals:
    """ANT-UW's clusters from an affinity file (checked against ``num_timesteps``) over [lo, hi]."""
    check_affinity_file(path, num_timesteps)
    matrix, bins, _ = load_affinity(path)
    return affinity_clusters(matrix, bins, k, lo, hi)
