"""Switch-DiT's expert usage at the end of a run: ``expert_usage.json`` in the run directory.

Switch-DiT's gate is a function of the timestep alone (switch_routing.py), so the usage of the model
over the tasks is exact, with no sampling: every one of the T timesteps is one sample.  The T
timesteps are cut into ``bins`` equal-width intervals (10 by default) and, for every block l, bin b
and expert e, the file holds

* ``gate_probs[l][b][e]``: the mean over the bin's timesteps of the gate probability g_e(t)
  (each (l, b) row sums to 1);
* ``selection[l][b][e]``: the fraction of the bin's timesteps whose top-k experts include e
  (each row sums to k, ``top_k``).

The final evaluation writes it for routing "learned" from the weights it samples with (the EMA
model); it is logged to MLflow with the other artifacts and the sweep report plots it
(reports/figures/routing.py, "Expert usage").
"""
from __future__ import annotations

import os

import torch

from trainers.diffusion.interval_clustering import equal_width_clusters
from trainers.files import atomic_write_json

USAGE_FILE = "expert_usage.json"
DEFAULT_BINS = 10


@torch.no_grad()
def expert_usage_record(model: torch.nn.Module, bins: int = DEFAULT_BINS) -> dict | None:
    """The usage record of a Switch-DiT model (module docstring); None for a model without one."""
    router = getattr(model, "router", None)
    if router is None or not hasattr(router, "gate_table"):
        return None
    was_training = model.training
    model.eval()
    try:
        probs = router.gate_table(model.t_embedder).float().cpu()  # (depth, T, E)
    finally:
        model.train(was_training)
    depth, num_timesteps, experts = probs.shape
    chosen = torch.zeros_like(probs).scatter_(-1, probs.topk(router.top_k, dim=-1).indices, 1.0)
    bounds = equal_width_clusters(num_timesteps, min(int(bins), num_timesteps))

    def binned(table: torch.Tensor) -> list:
        return torch.stack([table[:, lo:hi + 1].mean(1) for lo, hi in bounds], dim=1).tolist()

    return {"num_timesteps": num_timesteps, "bins": [list(b) for b in bounds], "depth": depth,
            "experts": experts, "top_k": int(router.top_k), "gate_probs": binned(probs), "selection": binned(chosen),
            "definition": "per block and timestep bin: mean gate probability of each expert over the bin's "
                          "timesteps, and the fraction of them whose top-k includes it"}


def write_expert_usage(model: torch.nn.Module, run_dir: str, bins: int = DEFAULT_BINS) -> str | None:
    """Write ``<run_dir>/expert_usage.json`` for a Switch-DiT model; its path, or None for other models."""
    record = expert_usage_record(model, bins)
    if record is None:
        return None
    path = os.path.join(run_dir, USAGE_FILE)
    atomic_write_json(path, record)
    return path
