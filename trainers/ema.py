"""Exponential moving average of the weights (fp32), used for sampling and evaluation."""
from __future__ import annotations

import copy

import torch


class EMA:
    """``ema = decay * ema + (1 - decay) * param`` after every optimizer step (DiT: 0.9999)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.model = copy.deepcopy(model).float().eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        live = dict(model.named_parameters())
        for name, ema_param in self.model.named_parameters():
            ema_param.mul_(self.decay).add_(live[name].detach().float(), alpha=1.0 - self.decay)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
