"""Loss weightings for epsilon prediction (docs/loss_weighting.md).

* ``vanilla``: w = 1.
* ``min_snr``: Min-SNR-gamma, ``w = min(SNR, gamma) / SNR`` (gamma = 5).
* ``p2``: ``w = 1 / (k + SNR) ** gamma`` (k = 1, gamma = 1).
* ``ant_uw``: w = 1 here; the weighting is :class:`UncertaintyWeighting` over
  K timestep clusters.
* ``pcgrad``, ``nash_mtl``: w = 1 here; ANT's PCGrad / Nash-MTL combine the K
  timestep clusters' gradients (trainers/training/gradient_combination.py).

Weights are per sample: an (N,) SNR goes in, an (N,) weight comes out, and
:func:`combine_loss` refuses mismatched shapes (the released DTR code
broadcast P2 weights against the wrong axis).  The weight multiplies the MSE
term only; the VB term of a learned variance is added unweighted.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

__all__ = [
    "WEIGHTINGS",
    "CLUSTER_WEIGHTINGS",
    "GRADIENT_COMBINATIONS",
    "loss_weight",
    "combine_loss",
    "UncertaintyWeighting",
]

WEIGHTINGS = ("vanilla", "min_snr", "p2", "ant_uw")
GRADIENT_COMBINATIONS = ("pcgrad", "nash_mtl")  # per-sample weight 1; ANT's gradient combination over clusters
CLUSTER_WEIGHTINGS = ("ant_uw", *GRADIENT_COMBINATIONS)  # ANT: stratified over K timestep clusters
_DEFAULT_GAMMA = {"min_snr": 5.0, "p2": 1.0}


def _check_kind(kind: str) -> str:
    if kind not in WEIGHTINGS + GRADIENT_COMBINATIONS:
        raise ValueError(f"kind must be one of {WEIGHTINGS + GRADIENT_COMBINATIONS}, got kind={kind!r}")
    return kind


def loss_weight(kind: str, snr_t: Tensor, *, gamma: Optional[float] = None, k: float = 1.0) -> Tensor:
    """Per-sample weight (N,) for the SNR (N,) of each sample's own timestep."""
    _check_kind(kind)
    snr_t = torch.as_tensor(snr_t)
    if snr_t.ndim != 1:
        raise ValueError(f"snr_t must be 1-D (N,), got shape {tuple(snr_t.shape)}")
    if not snr_t.is_floating_point():
        snr_t = snr_t.double()
    if gamma is not None and not gamma > 0:
        raise ValueError(f"gamma must be > 0, got gamma={gamma!r}")
    if not k >= 0:
        raise ValueError(f"k must be >= 0, got k={k!r}")
    if torch.isnan(snr_t).any() or (snr_t < 0).any():
        raise ValueError("snr_t must be non-negative and not NaN")
    if kind == "vanilla" or kind in CLUSTER_WEIGHTINGS:
        return torch.ones_like(snr_t)
    g = float(_DEFAULT_GAMMA[kind] if gamma is None else gamma)
    if kind == "min_snr":
        # min(snr, g) / snr, written so that snr <= g gives exactly 1 (also at snr = 0).
        return g / snr_t.clamp_min(g)
    return (k + snr_t).pow(-g)  # p2


def combine_loss(
    mse: Tensor,
    vb: Optional[Tensor],
    t: Tensor,
    snr: Tensor,
    kind: str,
    *,
    gamma: Optional[float] = None,
    k: float = 1.0,
) -> Tensor:
    """Per-sample loss (N,): ``w[t] * mse + vb``.

    ``snr`` is the (T,) schedule, indexed by each sample's own ``t`` (N,).
    ``vb`` may be None (fixed variance).  For ``ant_uw`` w = 1 and the result
    is what :class:`UncertaintyWeighting` consumes (for ``pcgrad`` / ``nash_mtl``, what the
    per-cluster losses average).
    """
    _check_kind(kind)
    if mse.ndim != 1:
        raise ValueError(f"mse must be per-sample (N,), got shape {tuple(mse.shape)}")
    if t.shape != mse.shape:
        raise ValueError(f"t shape {tuple(t.shape)} does not match mse shape {tuple(mse.shape)}")
    if vb is not None and vb.shape != mse.shape:
        raise ValueError(f"vb shape {tuple(vb.shape)} does not match mse shape {tuple(mse.shape)}")
    snr = torch.as_tensor(snr)
    if snr.ndim != 1:
        raise ValueError(f"snr must be the (T,) schedule, got shape {tuple(snr.shape)}")
    snr_t = snr[t.to(device=snr.device, dtype=torch.long)]
    w = loss_weight(kind, snr_t, gamma=gamma, k=k).to(device=mse.device, dtype=mse.dtype)
    out = w * mse
    return out if vb is None else out + vb


class UncertaintyWeighting(nn.Module):
    """ANT-UW: ``L = sum_j 0.5 * (exp(-s_j) * Lbar_j / K + s_j)`` over K clusters of a global batch.

    ``s_j`` (``log_vars``) start at 0; ``Lbar_j`` is the mean loss of the global batch's samples
    in cluster j.  Clusters with no sample in the global batch are skipped entirely (neither their
    loss term nor their ``s_j`` regulariser is added), so their ``s_j`` gets a zero gradient.

    Micro-batches: a global batch of G samples cut into M equal micro-batches (gradient
    accumulation, data parallelism) must train the same objective whatever M.  Called on one
    micro-batch with ``counts`` (K,), the samples of each cluster in the whole global batch, it
    returns that micro-batch's share

        L_m = sum_{j: counts_j > 0} 0.5 * s_j + 0.5 * (G / N_m) * sum_{i in m} exp(-s_{c_i}) * l_i / (K * counts_{c_i})

    whose mean over the M micro-batches (what DeepSpeed's gradient averaging computes) is L
    exactly: each ``s_j`` is counted once per global batch and each cluster mean divides by the
    cluster's global count, however the clusters fall across micro-batches.  Without ``counts``
    the batch is the whole global batch (M = 1).
    """

    def __init__(self, num_clusters: int):
        super().__init__()
        if isinstance(num_clusters, bool) or int(num_clusters) != num_clusters or num_clusters < 1:
            raise ValueError(f"num_clusters must be a positive integer, got {num_clusters!r}")
        self.num_clusters = int(num_clusters)
        self.log_vars = nn.Parameter(torch.zeros(self.num_clusters))

    def _check(self, per_sample_loss: Tensor, cluster_idx: Tensor) -> Tensor:
        if per_sample_loss.ndim != 1 or cluster_idx.shape != per_sample_loss.shape:
            raise ValueError(
                "per_sample_loss and cluster_idx must both be (N,), got "
                f"{tuple(per_sample_loss.shape)} and {tuple(cluster_idx.shape)}"
            )
        idx = cluster_idx.to(device=self.log_vars.device, dtype=torch.long)
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.num_clusters):
            raise ValueError(f"cluster_idx must lie in [0, {self.num_clusters})")
        return idx

    def cluster_means(self, per_sample_loss: Tensor, cluster_idx: Tensor) -> tuple[Tensor, Tensor]:
        """(Lbar (K,), present (K,) bool) of a whole batch; Lbar is 0 where a cluster is empty."""
        idx = self._check(per_sample_loss, cluster_idx)
        loss = per_sample_loss.to(device=self.log_vars.device, dtype=self.log_vars.dtype)
        sums = torch.zeros_like(self.log_vars).index_add(0, idx, loss)
        counts = torch.bincount(idx, minlength=self.num_clusters).to(loss.dtype)
        return sums / counts.clamp_min(1), counts > 0

    def forward(self, per_sample_loss: Tensor, cluster_idx: Tensor, counts: Tensor | None = None) -> Tensor:
        idx = self._check(per_sample_loss, cluster_idx)
        dtype = torch.promote_types(self.log_vars.dtype, torch.float32)  # at least fp32 under a bf16 engine
        loss = per_sample_loss.to(device=self.log_vars.device, dtype=dtype)
        local = torch.bincount(idx, minlength=self.num_clusters).to(loss.dtype)
        counts = local if counts is None else torch.as_tensor(counts).to(device=loss.device, dtype=loss.dtype)
        if counts.shape != (self.num_clusters,) or (local > counts).any():
            raise ValueError(f"counts must be the (K={self.num_clusters},) global count of each cluster, at least "
                             "its count in this micro-batch")
        s = self.log_vars.to(dtype)
        share = counts.sum() / max(loss.numel(), 1)  # G / N_m: the number of micro-batches
        weights = torch.exp(-s) / (self.num_clusters * counts.clamp_min(1))
        data = (weights[idx] * loss).sum() * share
        return 0.5 * (data + torch.where(counts > 0, s, torch.zeros_like(s)).sum())

    def param_group(self, lr: float = 0.025) -> dict:
        """Param group for its own AdamW group (no weight decay)."""
        return {"params": [self.log_vars], "lr": lr, "weight_decay": 0.0}
