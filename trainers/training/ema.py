"""Exponential moving average of the weights (fp32), used for sampling and evaluation.

DiT and DTR average fp32 weights.  Under DeepSpeed bf16/fp16 the module holds low-precision
parameters and the fp32 master copy lives in the optimizer, so :func:`update_ema` folds in the
master weights (:func:`master_weights`) and falls back to the upcast module parameters only when
there are none (fp32 training, where they are the same thing).
"""
from __future__ import annotations

import copy

import torch


class EMA:
    """``ema = d * ema + (1 - d) * param`` after every optimizer step (DiT: d = 0.9999).

    With ``warmup`` the decay of update ``n`` is ``min(decay, (1 + n) / (10 + n))``, so a short
    run's EMA is not dominated by the (zero-initialised, all-zero-output) starting weights.
    The decay is a function of the step alone, so resume stays exact.
    """

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool = False):
        self.decay, self.warmup = float(decay), bool(warmup)
        self.model = copy.deepcopy(model).float().eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int, weights: dict[str, torch.Tensor] | None = None) -> None:
        """Fold in the weights after optimizer step ``step`` (0-based): ``weights`` (name -> fp32
        tensor, e.g. the optimizer's master copy) where given, else ``model``'s parameters upcast."""
        decay = self.decay_at(step)
        live = dict(model.named_parameters())
        weights = weights or {}
        for name, ema_param in self.model.named_parameters():
            value = weights.get(name)
            value = live[name].detach() if value is None else value
            ema_param.mul_(decay).add_(value.to(ema_param.device, torch.float32).view_as(ema_param),
                                       alpha=1.0 - decay)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)


def _master_source(model: torch.nn.Module) -> str | None:
    """Where the fp32 master copy of the trainable parameters lives: None (the parameters are the
    fp32 weights), "groups" (the ZeRO-0 fp16/bf16 optimizer's per-parameter fp32 copies) or
    "partitioned" (ZeRO 1/2/3 and BF16_Optimizer: each rank holds a slice, so assembling a full
    parameter is a collective every rank must take part in)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if any(hasattr(p, "ds_id") for p in params):  # ZeRO-3: even fp32 parameters are slices
        return "partitioned"
    if all(p.dtype == torch.float32 for p in params):
        return None
    return "partitioned" if any(hasattr(p, "_hp_mapping") for p in params) else "groups"


@torch.no_grad()
def master_weights(model: torch.nn.Module, optimizer) -> dict[str, torch.Tensor] | None:
    """The fp32 master copy of ``model``'s low-precision trainable parameters, by name; None when
    the parameters are fp32 themselves (nothing to gather) or the optimizer keeps no master copy.

    DeepSpeed keeps it in one of two places: ZeRO 1/2/3 and BF16_Optimizer link every parameter
    to its fp32 fragment (``deepspeed.utils.safe_get_full_fp32_param``, a collective when the
    copy is partitioned); the ZeRO-0 fp16/bf16 optimizer (``FP16_UnfusedOptimizer``, what
    DeepSpeed 0.19 builds for a torch optimizer) holds parallel lists ``fp16_groups`` /
    ``fp32_groups``.  Frozen parameters have no master copy and are taken as they are.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    source = _master_source(model)
    if source is None:
        return None
    if source == "partitioned":
        from deepspeed.utils import safe_get_full_fp32_param
        out = {n: safe_get_full_fp32_param(p) for n, p in named}
        return None if any(v is None for v in out.values()) else {n: v.float() for n, v in out.items()}
    low, high = getattr(optimizer, "fp16_groups", None), getattr(optimizer, "fp32_groups", None)
    if low is None or high is None:
        return None
    by_id = {id(lp): hp for lps, hps in zip(low, high) for lp, hp in zip(lps, hps)}
    if not all(id(p) in by_id for _, p in named):
        return None
    return {n: by_id[id(p)] for n, p in named}


def update_ema(ema: EMA | None, model: torch.nn.Module, step: int, optimizer=None) -> None:
    """Fold ``model``'s weights after step ``step`` into ``ema`` (None on ranks without one),
    from the fp32 master copy in ``optimizer`` (the DeepSpeed engine's) when it keeps one.
    Call it on every rank: assembling a partitioned master copy is a collective."""
    if ema is None and _master_source(model) != "partitioned":
        return
    weights = master_weights(model, optimizer) if optimizer is not None else None
    if ema is not None:
        ema.update(model, step, weights)
