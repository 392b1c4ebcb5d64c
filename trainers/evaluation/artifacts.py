"""What a finished run leaves in its directory (and in MLflow): metrics.json, samples.png,
routing_mask.png, and for Switch-DiT expert_usage.json (trainers/models/expert_usage.py)."""
from __future__ import annotations

import os

import torch

from trainers.config import RunConfig
from trainers.files import atomic_write_json
from trainers.models.expert_usage import write_expert_usage


def save_sample_grid(samples: torch.Tensor, path: str, n: int = 64) -> str:
    from torchvision.utils import save_image
    save_image(samples[:n], path, nrow=8, normalize=True, value_range=(-1, 1))
    return path


def save_mask_image(model: torch.nn.Module, path: str, title: str = "") -> str | None:
    """The routing mask (T x C, first block) as an image, paper Fig. 2 style."""
    masks = getattr(model, "routing_masks", None)
    if masks is None:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    ax.imshow(masks[0].float().cpu().numpy(), aspect="auto", cmap="Greys_r", interpolation="nearest")
    ax.set_xlabel("channel")
    ax.set_ylabel("timestep t (task)")
    ax.set_title(title or "routing mask")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_final_artifacts(cfg: RunConfig, result: dict, live_model, tracker) -> dict:
    """metrics.json, samples.png, routing_mask.png (and expert_usage.json) in the run directory, logged
    to MLflow; ``live_model``: the model the final evaluation sampled with (the EMA weights)."""
    os.makedirs(cfg.run_dir, exist_ok=True)
    samples = result.pop("samples", None)
    paths = []
    if samples is not None:
        paths.append(save_sample_grid(samples, os.path.join(cfg.run_dir, "samples.png")))
    mask = save_mask_image(live_model, os.path.join(cfg.run_dir, "routing_mask.png"), cfg.label())
    if mask:
        paths.append(mask)
    usage = write_expert_usage(live_model, cfg.run_dir)  # Switch-DiT: gates and top-k per timestep bin
    if usage:
        paths.append(usage)
    metrics_path = os.path.join(cfg.run_dir, "metrics.json")
    atomic_write_json(metrics_path, {"config": cfg.to_dict(), "label": cfg.label(), **result})
    paths.append(metrics_path)
    tracker.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float))}, step=cfg.steps)
    tracker.set_tags({"feature_set": result.get("feature_set", ""), "fid_protocol": result.get("fid_protocol", "")})
    for path in paths:
        tracker.log_artifact(path)
    return result
