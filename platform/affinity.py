"""``python -m platform.affinity``: measure ANT's task-affinity matrix of a trained run.

    python -m platform.affinity --run-dir runs/train/demo --bins 50 --out runs/affinity/affinity.npy
    python -m platform.affinity --run-dir runs/train/demo --checkpoint 400 --bins 50 --samples 64 --out FILE
    python -m trainers.train --preset laptop --weighting ant_uw --uw-cluster-method affinity \\
        --uw-affinity-file runs/affinity/affinity.npy                  # ANT-UW with the affinity clusters

From a checkpoint of the run (the newest that verifies, or step ``--checkpoint N``) it estimates the
binned T x T affinity (cosine similarity of the per-bin loss gradients, trainers/diffusion/affinity.py)
on ``--samples`` training images of the run's own data set, and writes ``FILE.npy`` (the matrix),
``FILE.json`` (settings, bins, the checkpoint) and ``FILE.png`` (the matrix with the ``--clusters`` K
affinity intervals outlined).  Bad input prints one ``error:`` line and exits 2.  Run from the
repository root (see README).
"""
from __future__ import annotations

import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m platform.affinity", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", required=True, help="a training run directory (its checkpoints/)")
    p.add_argument("--checkpoint", type=int, default=None, metavar="N", help="the checkpoint of step N "
                   "(default: the newest that verifies)")
    p.add_argument("--bins", type=int, default=50, help="equal-width timestep bins (default 50: 20 steps each of T=1000)")
    p.add_argument("--samples", type=int, default=64, help="training images, the same for every bin (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the images, noise and in-bin offsets")
    p.add_argument("--weights", choices=("ema", "live"), default="ema",
                   help="ema: the EMA weights (every ZeRO stage; default); live: the trained weights (ZeRO 0-2)")
    p.add_argument("--clusters", type=int, default=8, help="K affinity clusters outlined in the figure (default 8)")
    p.add_argument("--out", required=True, help="FILE(.npy): FILE.npy, FILE.json and FILE.png are written")
    return p


def _checkpoint_dir(run_dir: str, step: int | None) -> str:
    from trainers.training.checkpoint import resolve_resume_dir, tag_for
    if step is None:
        return resolve_resume_dir(run_dir)
    path = os.path.join(run_dir, "checkpoints", tag_for(step))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no checkpoint of step {step} in {run_dir}/checkpoints")
    return resolve_resume_dir(path)


def _model(path: str, weights: str):
    """(model, config) of checkpoint ``path`` with its EMA or its live (DeepSpeed module) weights."""
    import torch

    from trainers.training.checkpoint import load_ema_model
    model, cfg, _ = load_ema_model(path)
    if weights == "live":
        state = torch.load(os.path.join(path, "mp_rank_00_model_states.pt"), map_location="cpu",
                           weights_only=False)["module"]
        live = {k[len("model."):]: v.float() for k, v in state.items() if k.startswith("model.")}
        bad = [k for k, v in model.state_dict().items() if k not in live or live[k].shape != v.shape]
        if bad:
            raise ValueError(f"{path}: the live weights are not whole (ZeRO-3 partitions them); use --weights ema")
        model.load_state_dict(live)
    return model.float(), cfg


def measure(args: argparse.Namespace) -> dict:
    import numpy as np

    from trainers.data.registry import build_dataset
    from trainers.diffusion.affinity import affinity_clusters, affinity_matrix, save_affinity
    from trainers.diffusion.gaussian import GaussianDiffusion
    from trainers.training.batches import load_batch
    if args.samples < 1 or args.clusters < 1:
        raise ValueError("--samples and --clusters must be >= 1")
    path = _checkpoint_dir(args.run_dir, args.checkpoint)
    model, cfg = _model(path, args.weights)
    data = build_dataset(cfg.dataset, root=cfg.data_root or None, image_size=cfg.image_size, split="train",
                         random_flip=False, seed=cfg.seed)
    picks = np.random.default_rng(args.seed).choice(len(data), size=min(args.samples, len(data)), replace=False)
    x0, y = load_batch(data, [(0, int(i)) for i in picks])
    diffusion = GaussianDiffusion(cfg.schedule, cfg.num_timesteps, learn_sigma=cfg.learn_sigma)
    matrix, bins = affinity_matrix(model, diffusion, x0, y if model.num_classes > 1 else None, args.bins, args.seed)
    settings = {"num_timesteps": cfg.num_timesteps, "checkpoint": os.path.abspath(path), "run_dir":
                os.path.abspath(args.run_dir), "weights": args.weights, "samples": len(picks), "seed": args.seed,
                "model": cfg.model, "dataset": cfg.dataset, "schedule": cfg.schedule,
                "definition": "cosine of per-bin loss gradients (MSE + VB), all trainable parameters"}
    npy, meta = save_affinity(args.out, matrix, bins, settings)
    clusters = affinity_clusters(matrix, bins, min(args.clusters, len(bins)))
    from reports.figures.affinity import affinity_figure
    from reports.figures.common import figure_png
    png = npy[:-4] + ".png"
    with open(png, "wb") as f:
        f.write(figure_png(affinity_figure(matrix, bins, clusters, f"task affinity of {cfg.run_name} ({cfg.model}, "
                                                                   f"{len(bins)} bins)")))
    return {"npy": npy, "json": meta, "png": png, "clusters": clusters}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = measure(args)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"affinity matrix: {out['npy']}\nsettings: {out['json']}\nfigure: {out['png']}")
    print("affinity clusters: " + ", ".join(f"[{lo}, {hi}]" for lo, hi in out["clusters"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
