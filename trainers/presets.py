"""Named run presets: the same config object at the scale of a test, a laptop or the paper.

A preset only sets fields of :class:`RunConfig`; CLI flags and search spaces
override them field by field.
"""
from __future__ import annotations

from trainers.config import RunConfig

PRESETS: dict[str, dict] = {
    # seconds on 2 CPU cores: what the test suite trains
    "smoke": dict(model="DiT-T/4", global_batch=16, micro_batch=16, steps=20, log_every=1, ckpt_every=10,
                  eval_every=0, eval_k=64, final_eval_samples=64, sample_steps=10, lr=1e-3,
                  ema_decay=0.9, ema_warmup=True, progress=False),
    # minutes on a 2-core laptop CPU: Fashion-MNIST, a tiny DiT, domain-feature FID (sized so that
    # `make search` fits in 15 minutes on 2 cores).  precision "auto": bf16 autocast on CPUs with AMX /
    # AVX512-BF16 (sampling ~1.9x faster for DiT-T/4, training ~1.1x), fp32 elsewhere.  Cosine noise
    # schedule (as the DTR paper's runs): FID 203 vs 234 for linear after 600 steps in one measured
    # pair (docs/training.md, "The laptop configuration"); single seeds, not yet a tuned default.
    "laptop": dict(model="DiT-T/4", global_batch=64, micro_batch=64, steps=240, log_every=10, ckpt_every=40,
                   eval_every=120, eval_k=160, final_eval_samples=400, sample_steps=25, lr=1e-3,
                   ema_decay=0.999, ema_warmup=True, sampler="ddim", schedule="cosine", precision="auto"),
    # the paper's ImageNet 256 setting (DTR Table 1/2): DiT-L/2 on cached SD-VAE latents, the cosine
    # noise schedule of DTR's App. C (DiT itself trains with the linear one)
    "paper": dict(model="DiT-L/2", dataset="latents", image_size=32, global_batch=256, micro_batch=32,
                  lr=1e-4, weight_decay=0.0, ema_decay=0.9999, steps=400_000, log_every=100,
                  ckpt_every=50_000, eval_every=50_000, eval_k=10_000, final_eval_samples=50_000,
                  feature_set="inception", sampler="ddpm", sample_steps=250, cfg_scale=1.5,
                  precision="bf16", schedule="cosine", progress=False),
    # the paper's pipeline at test size (the simulated cluster in tests/test_paper_sim.py): latents of
    # the tiny random VAE (32 px images -> 8x8x4), DiT on them, DDPM with few steps, CFG 1.5, features
    # of an Inception-architecture network with a classifier head (so IS is measured too)
    "paper-sim": dict(model="DiT-T/2", dataset="latents", image_size=8, global_batch=16, micro_batch=8,
                      lr=1e-4, weight_decay=0.0, ema_decay=0.9999, ema_warmup=True, steps=20, log_every=1,
                      ckpt_every=10, eval_every=10, eval_k=8, final_eval_samples=16,
                      feature_set="inception-random", sampler="ddpm", sample_steps=5, cfg_scale=1.5,
                      precision="auto", schedule="cosine", progress=False),
}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def preset_config(name: str, **overrides) -> RunConfig:
    """The named preset as a RunConfig, with ``overrides`` applied on top."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {preset_names()}")
    return RunConfig(**{**PRESETS[name], **overrides})
