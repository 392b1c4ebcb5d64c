"""Evaluate any checkpoint: sample from its EMA weights and score the samples.

    # a run directory or one of its checkpoint directories
    python -m trainers.evaluate runs/train/run --samples 2000 --sampler ddpm --sample-steps 250
"""
from __future__ import annotations

import argparse
import json
import sys

from trainers.diffusion.gaussian import GaussianDiffusion
from trainers.evaluation.evaluate import evaluate_model
from trainers.training.checkpoint import load_ema_model


def main(argv: list[str] | None = None) -> int:
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
