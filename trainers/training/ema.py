"""Exponential moving average of the weights (fp32), used for sampling and evaluation."""
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
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Fold in the weights after optimizer step ``step`` (0-based)."""
        decay = self.decay_at(step)
        live = dict(model.named_parameters())
        for name, ema_param in self.model.named_parameters():
            ema_param.mul_(decay).add_(live[name].detach().float(), alpha=1.0 - decay)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
