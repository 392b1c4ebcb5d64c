"""Sample from the EMA weights and score the samples (FID / IS / precision / recall).

Every rank draws a disjoint share of the ``n`` samples (sample ``i`` goes to rank ``i % world``)
and sample ``i`` always has the same class label and the same noise, seeded by (run seed, i):
the same ``n`` images whatever the world size, and the same noise at every FID-k step of a run.
Each rank turns its share into features (after decoding latents with the cache's VAE); rank 0
gathers them in sample order and scores.  Every result carries ``fid_protocol``, the settings
that make its FID comparable (sampler, steps, guidance, sample count, reference, features).
A text-conditional model samples through trainers/text/conditioning.py: its label ``i`` is the
``i``-th held-out caption (``i mod n``), CFG's null is the empty caption, FID's real side is the
caption set's images, and a CLIP score is added where CLIP weights exist (trainers/text/clip_score.py).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from trainers.config import RunConfig
from trainers.diffusion.sampling import PerSampleNoise, sample
from trainers.evaluation.feature_sets import get_feature_set
from trainers.evaluation.latent_images import latent_decoder, reference_source
from trainers.evaluation.metrics import reference, sample_features, score_features
from trainers.precision import resolve_precision
from trainers.text.clip_score import clip_summary, sample_clip_scores
from trainers.text.conditioning import caption_reference, is_text_model, sampling_model, scoring_labels

SAMPLE_SEED_OFFSET = 10_007
GRID_SAMPLES = 64  # the first samples (by index) kept for samples.png


def sample_seed(run_seed: int, index: int) -> int:
    """The noise seed of sample ``index`` of a run: independent of batch, rank and world size."""
    return int(np.random.SeedSequence([run_seed + SAMPLE_SEED_OFFSET, index]).generate_state(1, np.uint64)[0])


def sample_labels(indices, num_classes: int) -> torch.Tensor:
    """Balanced class labels: sample ``i`` is conditioned on class ``i % num_classes``."""
    indices = torch.as_tensor(list(indices), dtype=torch.long)
    return indices % num_classes if num_classes > 1 else torch.zeros_like(indices)


def generate_samples(model: torch.nn.Module, diffusion, cfg: RunConfig, n_or_indices, *, device=None,
                     batch: int = 500, seed: int | None = None, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples (in [-1, 1] for pixel data; latents for latent data) and their labels, for sample
    indices ``n_or_indices`` (an int n means 0..n-1)."""
    device = device or next(model.parameters()).device
    model = sampling_model(model, cfg)  # text models: held-out caption ids -> token embeddings
    indices = list(range(n_or_indices)) if isinstance(n_or_indices, int) else [int(i) for i in n_or_indices]
    run_seed = cfg.seed if seed is None else seed
    num_classes = model.num_classes
    labels = sample_labels(indices, num_classes)
    shape = (model.in_channels, model.input_size, model.input_size)
    precision = resolve_precision(cfg.precision, torch.device(device).type)
    out = []
    for lo in range(0, len(indices), batch):
        y = labels[lo:lo + batch]
        noise = PerSampleNoise([sample_seed(run_seed, i) for i in indices[lo:lo + batch]])
        x = sample(model, diffusion, (len(y), *shape), steps=cfg.sample_steps, method=cfg.sampler,
                   y=y.to(device) if num_classes > 1 else None, cfg_scale=cfg.cfg_scale,
                   guided_channels=cfg.guided_channels or None, clip_denoised=cfg.dataset != "latents",
                   noise=noise, progress=progress, precision=precision)
        out.append(x.float().cpu())
    samples = torch.cat(out) if out else torch.zeros((0, *shape))
    return (samples if cfg.dataset == "latents" else samples.clamp(-1, 1)), labels


def fid_protocol(cfg: RunConfig, n: int, feature_set: str, reference_name: str, reference_n: int,
                 decoder: str | None) -> str:
    """One line that says what an FID was measured with; numbers with different lines do not compare."""
    guided = cfg.guided_channels or "all"
    line = (f"{cfg.sampler}-{cfg.sample_steps} cfg={cfg.cfg_scale:g} guided={guided} n={n} "
            f"ref={reference_name} (n={reference_n}) features={feature_set}")
    return line + (f" vae={decoder}" if decoder else "")


def _gather(obj, rank: int, world: int) -> list:
    if world == 1:
        return [obj]
    import torch.distributed as dist
    box = [None] * world if rank == 0 else None
    dist.gather_object(obj, box, dst=0)
    return box if rank == 0 else []


def _rank_share(model, diffusion, cfg: RunConfig, n: int, rank: int, world: int, device, fs, decode) -> dict:
    """This rank's samples -> features (+ logits), the grid images among them and the seconds spent
    sampling (decoding and features count as metric time, as on one rank)."""
    indices = list(range(rank, n, world))
    t0 = time.perf_counter()
    samples, labels = generate_samples(model, diffusion, cfg, indices, device=device)
    sample_seconds = time.perf_counter() - t0
    images = decode(samples) if decode else samples
    feats, logits = sample_features(images, fs)
    grid = [(i, img) for i, img in zip(indices, images) if i < GRID_SAMPLES]
    clip = sample_clip_scores(model, cfg, images, labels, device)  # None unless a text run with CLIP weights
    return {"indices": indices, "labels": labels.numpy(), "feats": feats.astype(np.float32), "clip": clip,
            "logits": None if logits is None else logits.astype(np.float32), "grid": grid,
            "sample_seconds": sample_seconds}


def _merge(parts: list[dict]) -> dict:
    """The ranks' shares in sample-index order."""
    order = np.argsort(np.concatenate([p["indices"] for p in parts]), kind="stable")
    logits = None if parts[0]["logits"] is None else np.concatenate([p["logits"] for p in parts])[order]
    grid = sorted((g for p in parts for g in p["grid"]), key=lambda g: g[0])
    return {"feats": np.concatenate([p["feats"] for p in parts])[order].astype(np.float64),
            "labels": np.concatenate([p["labels"] for p in parts])[order],
            "logits": logits, "grid": torch.stack([img for _, img in grid]) if grid else None}


def evaluate_model(model, diffusion, cfg: RunConfig, n: int, *, rank: int = 0, world: int = 1, device=None,
                   keep_samples: bool = False) -> dict:
    """Score ``n`` samples of ``model`` drawn by all ``world`` ranks together (every rank calls
    this with the same weights); rank 0 returns the scores, other ranks ``{}``."""
    if n <= 0:
        return {}
    device = torch.device(device or next(model.parameters()).device)
    decode, decoder_name = latent_decoder(cfg, device) if cfg.dataset == "latents" else (None, None)
    ref_dataset, ref_root, ref_size = reference_source(cfg)
    ref_dataset, ref_root, ref_split = caption_reference(ref_dataset, ref_root)  # captions: the set's images
    fs = get_feature_set(cfg.feature_set, ref_dataset, device, ref_root)
    if rank == 0:  # the reference first, so a bad reference fails before any sampling
        ref = reference(ref_dataset, fs, ref_split, None, image_size=ref_size, data_root=ref_root, device=device)
    t0 = time.perf_counter()
    part = _rank_share(model, diffusion, cfg, n, rank, world, device, fs, decode)
    parts = _gather(part, rank, world)
    if rank != 0:
        return {}
    sample_seconds = max(p["sample_seconds"] for p in parts)  # the slowest rank's share
    merged = _merge(parts)
    conditional = (getattr(model, "num_classes", 1) > 1 or is_text_model(model)) and fs.name.startswith("domain")
    labels = scoring_labels(cfg, model, merged["labels"]) if conditional else None  # text: the caption's class
    scores = score_features(merged["feats"], merged["logits"], ref, labels=labels)
    reference_name = f"{ref_dataset}:{ref_root}" if ref_root else f"{ref_dataset}/train"
    result = {**scores, "feature_set": fs.name, "reference": reference_name,
              "fid_protocol": fid_protocol(cfg, n, fs.name, reference_name, scores["reference_n"], decoder_name),
              "precision_ran": resolve_precision(cfg.precision, device.type), "eval_world_size": world,
              "sample_seconds": sample_seconds, "sample_seconds_per_image": sample_seconds * world / n,
              "metric_seconds": time.perf_counter() - t0 - sample_seconds,
              **clip_summary(model, cfg, [p["clip"] for p in parts], device)}
    if keep_samples and merged["grid"] is not None:
        result["samples"] = merged["grid"]
    return result
