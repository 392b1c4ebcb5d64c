"""Sample from the EMA weights and score the samples (FID / IS / precision / recall).

Samples use a fixed seed per run, so FID-k at successive training steps compares
the same noise and labels; reports always carry the name of the feature set.
"""
from __future__ import annotations

import time

import torch

from trainers.config import RunConfig
from trainers.diffusion.sampling import sample
from trainers.evaluation.metrics import evaluate_samples
from trainers.precision import resolve_precision

SAMPLE_SEED_OFFSET = 10_007


def generate_samples(model: torch.nn.Module, diffusion, cfg: RunConfig, n: int, *, device=None,
                     batch: int = 500, seed: int | None = None, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples (in [-1, 1] for pixel data) with balanced class labels."""
    device = device or next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed + SAMPLE_SEED_OFFSET if seed is None else seed)
    num_classes = model.num_classes
    labels = torch.arange(n) % num_classes if num_classes > 1 else torch.zeros(n, dtype=torch.long)
    shape = (model.in_channels, model.input_size, model.input_size)
    precision = resolve_precision(cfg.precision, torch.device(device).type)
    out = []
    for lo in range(0, n, batch):
        y = labels[lo:lo + batch]
        x = sample(model, diffusion, (len(y), *shape), steps=cfg.sample_steps, method=cfg.sampler,
                   y=y.to(device) if num_classes > 1 else None, cfg_scale=cfg.cfg_scale,
                   guided_channels=cfg.guided_channels or None, clip_denoised=cfg.dataset != "latents",
                   generator=gen, progress=progress, precision=precision)
        out.append(x.float().cpu())
    return torch.cat(out).clamp(-1, 1), labels


def evaluate_model(model, diffusion, cfg: RunConfig, n: int, *, rank: int = 0, device=None,
                   keep_samples: bool = False) -> dict:
    """Rank 0 samples ``n`` images and scores them; other ranks return ``{}``."""
    if rank != 0 or n <= 0:
        return {}
    if cfg.dataset == "latents":
        raise RuntimeError("FID of latent-space runs is not wired yet: decode the samples with the run's VAE "
                           "(trainers.latents.load_vae) and score them against the image folder's reference")
    device = torch.device(device or next(model.parameters()).device)
    t0 = time.perf_counter()
    samples, labels = generate_samples(model, diffusion, cfg, n, device=device)
    sample_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    conditional = getattr(model, "num_classes", 1) > 1
    scores = evaluate_samples(samples, cfg.dataset, feature_set=cfg.feature_set, data_root=cfg.data_root or None,
                              labels=labels.numpy() if conditional else None)
    result = {**scores, "precision_ran": resolve_precision(cfg.precision, device.type),
              "sample_seconds": sample_seconds, "sample_seconds_per_image": sample_seconds / n,
              "metric_seconds": time.perf_counter() - t0}
    if keep_samples:
        result["samples"] = samples
    return result
