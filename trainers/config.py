"""The one run config: built by the CLI, filled in by a search space, logged to MLflow,
saved beside every checkpoint.

It is deliberately flat (one level of plain fields) so that a Tune/Optuna
parameter space, MLflow params and ``--key value`` CLI flags all address it
with the same names.  Units live in the names (``*_steps``, ``*_every``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

from trainers.config_checks import check_config
from trainers.config_checks_mtl import check_gradient_combination
from trainers.precision import PRECISIONS
from trainers.routing.spec import RoutingSpec, effective_routing_kind

WEIGHTINGS = ("vanilla", "min_snr", "p2", "ant_uw", "pcgrad", "nash_mtl")
SAMPLERS = ("ddpm", "ddim")

# Fields that may change on --resume (the step budget and where things are logged).
RESUMABLE_FIELDS = frozenset({"steps", "run_dir", "run_name", "mlflow_experiment", "progress"})


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run (one trial of a search)."""

    # -- identity
    run_name: str = "run"
    run_dir: str = "runs/train/run"
    seed: int = 0
    # -- model
    model: str = "DiT-T/2"
    learn_sigma: bool = True
    class_cond: bool = True
    text_encoder: str = "minilm"  # text models ("DiT-B/2-text"): minilm (offline) / clip-l14 / clip-b32
    # -- routing (the paper's names: beta = activation ratio, alpha = shift power)
    routing: str = "none"
    beta: float = 0.8
    alpha: float = 4.0
    routing_clusters: int = 4
    routing_cluster_method: str = "equal"
    routing_seed: int = 0
    roaming_every: int = 100  # MaxRoaming (routing="maxroaming"): steps between re-draws of the masks
    experts: int = 3  # Switch-DiT (routing="learned"): E linear experts per block
    top_k: int = 2  # Switch-DiT: experts each sample uses per block
    prior_weight: float = 1.0  # Switch-DiT: weight of the diffusion-prior (JS) loss
    # -- loss weighting (docs/loss_weighting.md)
    weighting: str = "vanilla"
    min_snr_gamma: float = 5.0
    p2_gamma: float = 1.0
    p2_k: float = 1.0
    uw_clusters: int = 8
    uw_lr: float = 0.025
    # timestep | snr | equal | affinity: how ANT-UW's K clusters are found; "timestep" = DTR App. C (8 equal
    # intervals); "affinity" clusters the measured task-affinity matrix of uw_affinity_file (python -m platform.affinity)
    uw_cluster_method: str = "timestep"
    uw_affinity_file: str = ""
    # -- diffusion
    schedule: str = "linear"
    num_timesteps: int = 1000
    # timestep interval [lo, hi] of a multi-expert member; -1 means the whole range
    expert_t_lo: int = -1
    expert_t_hi: int = -1
    # multi-expert baseline (paper App. D): N models, each trained on one of N equal intervals
    multi_expert_n: int = 1
    # -- data
    dataset: str = "fashion_mnist"
    data_root: str = ""
    image_size: int = 32
    random_flip: bool = True
    # -- optimisation (DeepSpeed)
    global_batch: int = 64
    micro_batch: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    ema_decay: float = 0.9999
    ema_warmup: bool = False  # decay min(ema_decay, (1+n)/(10+n)): for short runs (DiT itself uses none)
    zero_stage: int = 0
    precision: str = "fp32"
    # -- budget and logging
    steps: int = 1000
    log_every: int = 10
    ckpt_every: int = 500
    # -- evaluation: FID-k proxy during training, final metrics at the end
    eval_every: int = 0
    eval_k: int = 500
    final_eval_samples: int = 2000
    feature_set: str = "domain"
    sampler: str = "ddim"
    sample_steps: int = 50
    cfg_scale: float = 1.0
    guided_channels: int = 0  # 0 = all channels (DTR/Switch-DiT); 3 = DiT/ANT's leftover
    # FID's real side: "" = the run's own data (pixel runs) or the latent cache's source images; or an
    # ADM-suite reference batch .npz (its arr_0 images, featurised with this run's feature set)
    fid_reference: str = ""
    # -- housekeeping
    mlflow_experiment: str = "dtr"
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.routing_spec()  # validates routing fields
        _one_of("weighting", self.weighting, WEIGHTINGS)
        _one_of("uw_cluster_method", self.uw_cluster_method, ("snr", "timestep", "equal", "affinity"))
        _one_of("precision", self.precision, PRECISIONS)
        _one_of("sampler", self.sampler, SAMPLERS)
        _positive("steps", self.steps, allow_zero=True)
        _positive("global_batch", self.global_batch)
        _positive("micro_batch", self.micro_batch)
        _positive("num_timesteps", self.num_timesteps)
        _positive("log_every", self.log_every)
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.weighting in ("ant_uw", "pcgrad", "nash_mtl") and self.global_batch % self.uw_clusters:
            raise ValueError(f"global_batch={self.global_batch} must be divisible by uw_clusters={self.uw_clusters} "
                             f"({self.weighting} draws timesteps stratified in equal chunks)")
        if not 1 <= self.multi_expert_n <= self.num_timesteps:
            raise ValueError(f"multi_expert_n must be in [1, {self.num_timesteps}], got {self.multi_expert_n}")
        if self.multi_expert_n > 1 and self.expert_t_lo >= 0:
            raise ValueError("multi_expert_n > 1 assigns the expert intervals itself: leave expert_t_lo/hi at -1")
        if (self.expert_t_lo < 0) != (self.expert_t_hi < 0):
            raise ValueError("expert_t_lo and expert_t_hi must be given together")
        if self.expert_t_lo >= 0 and not 0 <= self.expert_t_lo <= self.expert_t_hi < self.num_timesteps:
            raise ValueError(f"expert interval [{self.expert_t_lo}, {self.expert_t_hi}] must lie in "
                             f"[0, {self.num_timesteps - 1}]")
        check_config(self)  # combinations across fields (model name, routing clusters, batches, ANT-UW)
        check_gradient_combination(self)  # PCGrad / Nash-MTL: ZeRO stage, one micro-batch per step

    # -- derived views
    def routing_spec(self) -> RoutingSpec:
        return RoutingSpec(kind=self.routing, beta=self.beta, alpha=self.alpha, clusters=self.routing_clusters,
                           cluster_method=self.routing_cluster_method, schedule=self.schedule,
                           seed=self.routing_seed, experts=self.experts, top_k=self.top_k,
                           prior_weight=self.prior_weight)

    @property
    def expert_interval(self) -> tuple[int, int] | None:
        return None if self.expert_t_lo < 0 else (self.expert_t_lo, self.expert_t_hi)

    def label(self) -> str:
        """Short human name of the method this config trains (for tables and plots)."""
        parts = []
        if effective_routing_kind(self.routing, self.beta) == "none":
            parts.append("vanilla")
        else:
            parts.append({"dtr": "DTR", "random": "R-TR", "cdtr": "CDTR", "ercdt": "ERCDT",
                          "learned": "Switch-DiT", "learned_window": "learned window",
                          "maxroaming": "MaxRoaming"}.get(
                self.routing, self.routing))
        if self.multi_expert_n > 1:
            parts.append(f"{self.multi_expert_n} experts")
        if self.weighting != "vanilla":
            parts.append({"min_snr": "Min-SNR", "p2": "P2", "ant_uw": "ANT-UW", "pcgrad": "ANT-PCGrad",
                          "nash_mtl": "ANT-Nash-MTL"}[self.weighting])
        return " + ".join(parts)

    # -- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> "RunConfig":
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def differences(self, other: "RunConfig", ignore=RESUMABLE_FIELDS) -> dict[str, tuple[Any, Any]]:
        """Fields (outside ``ignore``) where ``other`` differs from this config."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if k not in ignore and mine[k] != theirs[k]}


def _one_of(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")


def _positive(name: str, value: int, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")

