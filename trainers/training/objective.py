"""The training objective: diffusion loss terms, loss weighting and ANT-UW, in one module.

DeepSpeed wraps this module (not the bare DiT), so the ANT-UW log-variances are
saved, restored and optimised together with the model, in their own optimizer
group with their own learning rate.  ANT's PCGrad / Nash-MTL (``weighting`` =
``pcgrad`` / ``nash_mtl``) draw the same stratified batch and return the K per-cluster
losses in ``logs["cluster_losses"]`` for trainers/training/gradient_combination.py;
the combiner's state (Nash-MTL) is saved with the module.
"""
from __future__ import annotations

import torch
from torch import nn

from trainers.config import RunConfig
from trainers.diffusion.affinity import affinity_file_clusters
from trainers.diffusion.gaussian import GaussianDiffusion, sample_timesteps_stratified
from trainers.diffusion.interval_clustering import (
    equal_width_clusters,
    snr_clusters,
    timestep_clusters,
)
from trainers.diffusion.weighting import UncertaintyWeighting, combine_loss
from trainers.precision import autocast
from trainers.text.conditioning import text_conditioner
from trainers.training.gradient_combination import COMBINED_WEIGHTINGS, ClusterGradientCombiner, cluster_losses


def uw_cluster_bounds(cfg: RunConfig, diffusion: GaussianDiffusion) -> list[tuple[int, int]]:
    """ANT's K timestep clusters, placed by the configured clustering cost, over the timesteps the
    model trains on: all T, or a multi-expert member's own interval [lo, hi] (docs/baselines.md)."""
    lo, hi = cfg.expert_interval or (0, cfg.num_timesteps - 1)
    if cfg.uw_cluster_method == "affinity":  # the measured matrix's bins, mapped back to timesteps
        return affinity_file_clusters(cfg.uw_affinity_file, cfg.uw_clusters, lo, hi, cfg.num_timesteps)
    if cfg.uw_cluster_method == "snr":
        local = snr_clusters(diffusion.snr.numpy()[lo:hi + 1], cfg.uw_clusters)
    elif cfg.uw_cluster_method == "timestep":
        local = timestep_clusters(hi - lo + 1, cfg.uw_clusters)
    else:
        local = equal_width_clusters(hi - lo + 1, cfg.uw_clusters)
    return [(a + lo, b + lo) for a, b in local]


class DiffusionObjective(nn.Module):
    """``forward(x0, y, t, noise, cluster_idx) -> (loss, logs)`` for one micro-batch."""

    def __init__(self, cfg: RunConfig, model: nn.Module, diffusion: GaussianDiffusion, precision_ran: str = "fp32"):
        super().__init__()
        self.cfg, self.model, self.diffusion = cfg, model, diffusion
        self.precision_ran = precision_ran  # "amp-bf16": the model's forward under bf16 autocast
        self.uw = UncertaintyWeighting(cfg.uw_clusters) if cfg.weighting == "ant_uw" else None
        self.combiner = (ClusterGradientCombiner(cfg.weighting, cfg.uw_clusters)
                         if cfg.weighting in COMBINED_WEIGHTINGS else None)
        clustered = self.uw is not None or self.combiner is not None
        self.uw_bounds = uw_cluster_bounds(cfg, diffusion) if clustered else None  # ANT's K clusters
        self.gamma = {"min_snr": cfg.min_snr_gamma, "p2": cfg.p2_gamma}.get(cfg.weighting)
        self.register_buffer("snr", diffusion.snr.float().clone(), persistent=False)
        self.text = text_conditioner(cfg, model)  # text models: caption ids -> cached token embeddings

    def param_groups(self) -> list[dict]:
        groups = [{"params": [p for p in self.model.parameters() if p.requires_grad],
                   "lr": self.cfg.lr, "weight_decay": self.cfg.weight_decay, "name": "model"}]
        if self.uw is not None:
            groups.append({**self.uw.param_group(lr=self.cfg.uw_lr), "name": "ant_uw"})
        return groups

    def sample_timesteps(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(t, cluster_idx) for a global batch: stratified for ANT (UW, PCGrad, Nash-MTL), inside the expert's
        interval for a multi-expert member, else uniform over all T."""
        if self.uw_bounds is not None:
            return sample_timesteps_stratified(n, self.uw_bounds, generator)
        lo, hi = self.cfg.expert_interval or (0, self.cfg.num_timesteps - 1)
        t = torch.randint(lo, hi + 1, (n,), generator=generator)
        return t, torch.zeros(n, dtype=torch.long)

    def _uw_share(self, per_sample: torch.Tensor, cluster_idx: torch.Tensor) -> torch.Tensor:
        """This micro-batch's share of the global batch's UW objective (the mean of the shares over
        the global batch's equal micro-batches is the objective, docs/loss_weighting.md)."""
        if per_sample.shape[0] != self.cfg.micro_batch:
            raise ValueError(f"ANT-UW: a micro-batch of {per_sample.shape[0]} samples, expected micro_batch="
                             f"{self.cfg.micro_batch} (the shares assume equal micro-batches)")
        counts = torch.full((self.cfg.uw_clusters,), self.cfg.global_batch // self.cfg.uw_clusters,
                            device=per_sample.device)  # the stratified global batch: G / K in every cluster
        return self.uw(per_sample, cluster_idx, counts)

    def _model_fp32_out(self, x, t, y=None):
        dtype = next(self.model.parameters()).dtype
        with autocast(self.precision_ran, x.device.type):
            return (self.text or self.model)(x.to(dtype), t, y).float()

    def forward(self, x0, y, t, noise, cluster_idx):
        kwargs = {"y": y if self.model.num_classes > 1 or self.text else None}
        terms = self.diffusion.training_losses(self._model_fp32_out, x0.float(), t, model_kwargs=kwargs,
                                               noise=noise.float())
        per_sample = combine_loss(terms["mse"], terms["vb"], t, self.snr, self.cfg.weighting,
                                  gamma=self.gamma, k=self.cfg.p2_k)
        logs = {"mse": terms["mse"].mean().detach(), "vb": terms["vb"].mean().detach()}
        if self.combiner is not None:  # the K task losses, combined by gradient_combination.combined_backward
            logs["cluster_losses"] = cluster_losses(per_sample, cluster_idx, self.cfg.uw_clusters)
            loss = logs["cluster_losses"].sum()  # = the batch mean: equal strata
        else:
            loss = self._uw_share(per_sample, cluster_idx) if self.uw is not None else per_sample.mean()
        aux = getattr(self.model, "aux_loss", None)  # Switch-DiT's diffusion-prior loss (already weighted)
        if aux is not None:
            loss = loss + aux.to(loss.dtype)
            logs["aux_loss"] = aux  # PCGrad / Nash-MTL: added to the combined gradient as it is
            prior = getattr(self.model, "prior_loss", None)
            logs["prior"] = (aux if prior is None else prior).detach().float()
            self.model.aux_loss = self.model.prior_loss = None  # consumed: never added twice
        return loss, logs

    def log_record(self) -> dict[str, float]:
        """Per-step values of the weighting for the metrics record: ANT-UW's ``uw_s{j}``, or
        PCGrad / Nash-MTL's last weights ``mtl_w{j}`` and cluster-gradient cosines ``mtl_cos{i}_{j}``."""
        if self.uw is not None:
            return {f"uw_s{j}": v for j, v in enumerate(self.uw.log_vars.detach().tolist())}
        return self.combiner.record() if self.combiner is not None else {}
