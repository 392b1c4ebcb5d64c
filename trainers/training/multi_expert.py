"""The multi-expert baseline (DTR paper App. D): N separate models, expert i trained only on
the timesteps of interval i (equal intervals); at sampling time the expert of each sample's
current timestep denoises it.

A run with ``multi_expert_n = N`` trains its members one after another in
``<run_dir>/expert<i>/`` (each a complete, resumable run of ``steps`` steps: the budget is per
expert, as in the paper), then evaluates the composite.  A restarted run skips members that
already finished and resumes the one that was interrupted.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from trainers.config import RunConfig
from trainers.diffusion.gaussian import GaussianDiffusion
from trainers.diffusion.interval_clustering import equal_width_clusters, interval_owner
from trainers.evaluation.artifacts import write_final_artifacts
from trainers.evaluation.evaluate import evaluate_model
from trainers.models.from_config import model_for
from trainers.training.checkpoint import latest_checkpoint, tag_for
from trainers.training.loop import train_model
from trainers.training.tracking import MlflowRun, read_metrics


class CompositeExpertModel(nn.Module):
    """Routes every sample to the expert whose interval holds its (1000-grid) timestep."""

    def __init__(self, experts: list[nn.Module], bounds: list[tuple[int, int]], num_timesteps: int):
        super().__init__()
        if len(experts) != len(bounds):
            raise ValueError("one expert per interval")
        self.experts = nn.ModuleList(experts)
        self.register_buffer("owner", interval_owner(bounds, num_timesteps), persistent=False)
        first = experts[0]
        for name in ("num_classes", "in_channels", "out_channels", "learn_sigma", "input_size"):
            setattr(self, name, getattr(first, name))
        self.routing_masks = getattr(first, "routing_masks", None)

    def forward(self, x, t, y=None):
        out = None
        which = self.owner[t.long().to(self.owner.device)]
        for i, expert in enumerate(self.experts):
            sel = (which == i).nonzero(as_tuple=True)[0]
            if sel.numel() == 0:
                continue
            part = expert(x[sel], t[sel], None if y is None else y[sel])
            if out is None:
                out = x.new_zeros((x.shape[0], *part.shape[1:]))
            out[sel] = part
        return out


def member_configs(cfg: RunConfig) -> list[RunConfig]:
    """The N single-interval runs of a multi-expert config."""
    bounds = equal_width_clusters(cfg.num_timesteps, cfg.multi_expert_n)
    return [cfg.replace(multi_expert_n=1, expert_t_lo=lo, expert_t_hi=hi, eval_every=0, final_eval_samples=0,
                        run_dir=os.path.join(cfg.run_dir, f"expert{i}"), run_name=f"{cfg.run_name}-expert{i}")
            for i, (lo, hi) in enumerate(bounds)]


def _finished(member: RunConfig) -> bool:
    latest = latest_checkpoint(member.run_dir)
    return latest is not None and os.path.basename(latest) == tag_for(member.steps)


def load_composite(cfg: RunConfig) -> CompositeExpertModel:
    """The composite of the members' EMA weights."""
    experts = []
    for member in member_configs(cfg):
        model = model_for(member)
        model.load_state_dict(torch.load(os.path.join(latest_checkpoint(member.run_dir), "ema.pt"),
                                         map_location="cpu"))
        experts.append(model.eval())
    return CompositeExpertModel(experts, equal_width_clusters(cfg.num_timesteps, cfg.multi_expert_n),
                                cfg.num_timesteps)


def train_multi_expert(cfg: RunConfig, *, parent_run_id=None, report=None, mlflow_enabled=True,
                       threads=None) -> dict:
    """Train the N members (skipping finished ones), then evaluate the composite (rank 0 only)."""

    members = member_configs(cfg)
    started = any(latest_checkpoint(m.run_dir) for m in members)
    tracker = MlflowRun(cfg, parent_run_id=parent_run_id, enabled=mlflow_enabled, resuming=started)
    try:
        for i, member in enumerate(members):
            if not _finished(member):
                resume = latest_checkpoint(member.run_dir)
                train_model(member, resume=resume, mlflow_enabled=False, threads=threads)
            history = read_metrics(member.run_dir)
            for record in history:
                if "loss" in record:
                    tracker.log_metrics({f"loss_expert{i}": record["loss"]}, step=record["step"])
        composite = load_composite(cfg)
        diffusion = GaussianDiffusion(cfg.schedule, cfg.num_timesteps, learn_sigma=cfg.learn_sigma)
        final = evaluate_model(composite, diffusion, cfg, cfg.final_eval_samples, keep_samples=True)
        final = write_final_artifacts(cfg, final, composite, tracker)
        params = sum(p.numel() for p in composite.parameters())
        tracker.log_metrics({"parameters": params}, step=cfg.steps)
    except BaseException as err:
        tracker.set_tags({"error": f"{type(err).__name__}: {err}"[:4000]})
        tracker.finish("FAILED")
        raise
    tracker.finish("FINISHED")
    if report:
        report({"step": len(members) * cfg.steps, **final, "final": True}, None)
    return final
