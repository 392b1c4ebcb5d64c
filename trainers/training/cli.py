"""Command line of ``python -m trainers.train``: a flag for every RunConfig field."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from trainers.config import RunConfig
from trainers.presets import PRESETS, preset_config

FIELD_HELP = {
    "run_name": "name of the run (MLflow run name)", "run_dir": "directory for checkpoints, metrics.jsonl, artifacts",
    "seed": "seed of weights, data order, timesteps and noise",
    "model": "model name, e.g. DiT-T/4, DiT-S/2, DiT-L/2", "learn_sigma": "learn the variance (loss = MSE + VB)",
    "class_cond": "class-conditional (with a null class for CFG)",
    "routing": "none | dtr | random (R-TR) | cdtr | ercdt | learned (Switch-DiT) | learned_window | maxroaming",
    "beta": "activation ratio beta in (0, 1]",
    "alpha": "DTR shift power alpha > 0", "routing_clusters": "K clusters of cdtr/ercdt",
    "routing_cluster_method": "equal | snr: where the cdtr/ercdt clusters lie", "routing_seed": "seed of R-TR / MaxRoaming masks",
    "roaming_every": "MaxRoaming: steps between re-draws of the masks",
    "text_encoder": "text models (DiT-*-text): minilm (offline) / clip-l14 / clip-b32",
    "experts": "Switch-DiT (routing learned): experts E per block",
    "top_k": "Switch-DiT: experts k used per sample and block",
    "prior_weight": "Switch-DiT: weight of the diffusion-prior (JS) loss",
    "weighting": "vanilla | min_snr | p2 | ant_uw | pcgrad | nash_mtl", "min_snr_gamma": "Min-SNR gamma", "p2_gamma": "P2 gamma",
    "p2_k": "P2 k", "uw_clusters": "ANT-UW cluster count K", "uw_lr": "learning rate of the ANT-UW s_j",
    "uw_cluster_method": "snr | timestep | equal | affinity: how ANT-UW clusters are found",
    "uw_affinity_file": "task-affinity matrix for uw_cluster_method affinity (python -m platform.affinity)",
    "schedule": "linear | cosine beta schedule", "num_timesteps": "diffusion steps T",
    "expert_t_lo": "multi-expert member: lowest timestep trained (-1 = all)",
    "expert_t_hi": "multi-expert member: highest timestep trained (-1 = all)",
    "multi_expert_n": "multi-expert baseline: N models on N equal timestep intervals (1 = off)",
    "dataset": "fashion_mnist | mnist | image_folder | imagenet_folder | latents",
    "data_root": "data directory (or latent cache directory, built by python -m platform.prepare latents)", "image_size": "image (or latent) side length",
    "random_flip": "random horizontal flips", "global_batch": "images per optimizer step, all workers",
    "micro_batch": "images per worker per forward pass", "lr": "AdamW learning rate",
    "weight_decay": "AdamW weight decay", "grad_clip": "gradient clipping norm (0 = off)",
    "ema_decay": "EMA decay per step", "ema_warmup": "EMA decay warm-up min(decay, (1+n)/(10+n))", "zero_stage": "DeepSpeed ZeRO stage 0-3",
    "precision": "fp32 | bf16 | fp16", "steps": "optimizer steps (the budget)", "log_every": "log every N steps",
    "ckpt_every": "checkpoint every N steps", "eval_every": "FID-k every N steps (0 = off)",
    "eval_k": "samples of the FID-k proxy", "final_eval_samples": "samples of the final evaluation",
    "feature_set": "domain (small classifier) | inception",
    "fid_reference": "'' (the run's data / the cache's source images) or an ADM-suite reference batch .npz", "sampler": "ddpm | ddim",
    "sample_steps": "sampling steps (respaced)", "cfg_scale": "classifier-free guidance scale",
    "guided_channels": "channels CFG guides: 0 = all (DTR), 3 = DiT/ANT", "mlflow_experiment": "MLflow experiment",
    "progress": "progress bar / progress lines", "extra": "free-form JSON dict",
}


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainers.train", description="Train one diffusion model "
                                "with DeepSpeed (a trial of a search, or a run of its own).")
    p.add_argument("--preset", default="laptop", choices=sorted(PRESETS), help="named starting config")
    p.add_argument("--config", default=None, help="JSON file of config fields (applied after the preset)")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue from a run or checkpoint directory")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    group = p.add_argument_group("run config (defaults come from the preset)")
    for f in dataclasses.fields(RunConfig):
        kind = {bool: _bool, int: int, float: float, dict: json.loads}.get(
            {"bool": bool, "int": int, "float": float, "dict": dict}.get(str(f.type), str), str)
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=None,
                           help=FIELD_HELP.get(f.name, f.name))
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    overrides = {}
    if args.config:
        with open(args.config) as fh:
            overrides.update(json.load(fh))
    overrides.update({f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)
                      if getattr(args, f.name) is not None})
    overrides.update(run_location(overrides.get("run_name"), overrides.get("run_dir"), args.resume))
    return preset_config(args.preset, **overrides)


def run_location(run_name: str | None, run_dir: str | None, resume: str | None) -> dict:
    """``run_name`` and ``run_dir`` of a run: the given ones; the resumed run's own directory for
    ``--resume``; else a new, unique name under ``$DTR_RUNS_DIR/train`` (a second run never
    collides with the first)."""
    import os

    from trainers.paths import runs_dir
    if run_dir:
        return {"run_dir": run_dir, "run_name": run_name or os.path.basename(os.path.normpath(run_dir))}
    if run_name:
        return {"run_name": run_name, "run_dir": os.path.join(runs_dir(), "train", run_name)}
    if resume:
        resume = os.path.abspath(resume)
        parent = os.path.dirname(resume)
        found = os.path.dirname(parent) if os.path.basename(parent) == "checkpoints" else resume
        return {"run_name": os.path.basename(found), "run_dir": found}
    import secrets
    import time
    name = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    while os.path.exists(os.path.join(runs_dir(), "train", name)):
        name = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    return {"run_name": name, "run_dir": os.path.join(runs_dir(), "train", name)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (ValueError, TypeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(cfg.to_json())
        return 0
    from trainers.data.base import DatasetUnavailable
    from trainers.training.checkpoint import CheckpointWriteError, ConfigMismatch
    from trainers.training.loop import EvaluationError, NonFiniteLossError
    from trainers.training.run import train
    try:
        result = train(cfg, resume=args.resume, mlflow_enabled=not args.no_mlflow, threads=args.threads)
    except (ConfigMismatch, NonFiniteLossError, EvaluationError, DatasetUnavailable, FileNotFoundError,
            ValueError, CheckpointWriteError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 3 if isinstance(err, NonFiniteLossError) else 2
    print(json.dumps({k: v for k, v in result.items() if isinstance(v, (int, float, str))}, indent=2))
    return 0
