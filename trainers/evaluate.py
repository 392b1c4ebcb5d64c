"""Sample from the EMA weights and score the samples (FID / IS / precision / recall).

    # evaluate any checkpoint (a run directory or one of its checkpoint directories)
    python -m trainers.evaluate runs/train/run --samples 2000 --sampler ddpm --sample-steps 250

Samples use a fixed seed per run, so FID-k at successive training steps compares
the same noise and labels; reports always carry the name of the feature set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from trainers.config import RunConfig
from trainers.sampling import sample

SAMPLE_SEED_OFFSET = 10_007


def generate_samples(model: torch.nn.Module, diffusion, cfg: RunConfig, n: int, *, device=None,
                     batch: int = 500, seed: int | None = None, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples (in [-1, 1] for pixel data) with balanced class labels."""
    device = device or next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed + SAMPLE_SEED_OFFSET if seed is None else seed)
    num_classes = model.num_classes
    labels = torch.arange(n) % num_classes if num_classes > 1 else torch.zeros(n, dtype=torch.long)
    shape = (model.in_channels, model.input_size, model.input_size)
    out = []
    for lo in range(0, n, batch):
        y = labels[lo:lo + batch]
        x = sample(model, diffusion, (len(y), *shape), steps=cfg.sample_steps, method=cfg.sampler,
                   y=y.to(device) if num_classes > 1 else None, cfg_scale=cfg.cfg_scale,
                   guided_channels=cfg.guided_channels or None, clip_denoised=cfg.dataset != "latents",
                   generator=gen, progress=progress)
        out.append(x.float().cpu())
    return torch.cat(out).clamp(-1, 1), labels


def evaluate_model(model, diffusion, cfg: RunConfig, n: int, *, rank: int = 0, device=None,
                   keep_samples: bool = False) -> dict:
    """Rank 0 samples ``n`` images and scores them; other ranks return ``{}``."""
    if rank != 0 or n <= 0:
        return {}
    from trainers.metrics import evaluate_samples
    if cfg.dataset == "latents":
        raise RuntimeError("FID of latent-space runs is not wired yet: decode the samples with the run's VAE "
                           "(trainers.latents.load_vae) and score them against the image folder's reference")
    t0 = time.perf_counter()
    samples, labels = generate_samples(model, diffusion, cfg, n, device=device)
    sample_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = evaluate_samples(samples, cfg.dataset, feature_set=cfg.feature_set, data_root=cfg.data_root or None)
    result = {**scores, "sample_seconds": sample_seconds, "sample_seconds_per_image": sample_seconds / n,
              "metric_seconds": time.perf_counter() - t0}
    if keep_samples:
        result["samples"] = samples
    return result


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
    """metrics.json, samples.png, routing_mask.png in the run directory, logged to MLflow."""
    os.makedirs(cfg.run_dir, exist_ok=True)
    samples = result.pop("samples", None)
    paths = []
    if samples is not None:
        paths.append(save_sample_grid(samples, os.path.join(cfg.run_dir, "samples.png")))
    mask = save_mask_image(live_model, os.path.join(cfg.run_dir, "routing_mask.png"), cfg.label())
    if mask:
        paths.append(mask)
    metrics_path = os.path.join(cfg.run_dir, "metrics.json")
    tmp = metrics_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"config": cfg.to_dict(), "label": cfg.label(), **result}, f, indent=2)
    os.replace(tmp, metrics_path)
    paths.append(metrics_path)
    tracker.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float))}, step=cfg.steps)
    tracker.set_tags({"feature_set": result.get("feature_set", "")})
    for path in paths:
        tracker.log_artifact(path)
    return result


def load_ema_model(checkpoint_dir: str):
    """The EMA model and config of a complete checkpoint."""
    from trainers.checkpoint import read_checkpoint_config, resolve_resume_dir
    from trainers.train import model_for
    path = resolve_resume_dir(checkpoint_dir)
    cfg = read_checkpoint_config(path)
    model = model_for(cfg)
    model.load_state_dict(torch.load(os.path.join(path, "ema.pt"), map_location="cpu"))
    return model.eval(), cfg, path


def main(argv: list[str] | None = None) -> int:
    from trainers.diffusion import GaussianDiffusion
    p = argparse.ArgumentParser(prog="python -m trainers.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="run directory or checkpoint directory")
    p.add_argument("--samples", type=int, default=None, help="number of samples (default: the run's final_eval_samples)")
    p.add_argument("--sampler", choices=("ddpm", "ddim"), default=None)
    p.add_argument("--sample-steps", type=int, default=None)
    p.add_argument("--cfg-scale", type=float, default=None)
    p.add_argument("--feature-set", choices=("domain", "inception"), default=None)
    p.add_argument("--out", default=None, help="write the metrics JSON here (default: stdout only)")
    args = p.parse_args(argv)
    try:
        model, cfg, path = load_ema_model(args.checkpoint)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    changes = {k: v for k, v in {"sampler": args.sampler, "sample_steps": args.sample_steps,
                                 "cfg_scale": args.cfg_scale, "feature_set": args.feature_set}.items()
               if v is not None}
    cfg = cfg.replace(**changes)
    diffusion = GaussianDiffusion(cfg.schedule, cfg.num_timesteps, learn_sigma=cfg.learn_sigma)
    result = evaluate_model(model, diffusion, cfg, args.samples or cfg.final_eval_samples)
    result = {"checkpoint": path, **result}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
