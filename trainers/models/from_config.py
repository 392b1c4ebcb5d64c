"""The model a run config describes (used by training, evaluation and the benchmarks)."""
from __future__ import annotations

import torch

from trainers.config import RunConfig
from trainers.data.registry import dataset_info
from trainers.models import build_model


def model_for(cfg: RunConfig) -> torch.nn.Module:
    """The (un-trained) model a config describes; seeded so every rank builds the same weights.
    Its mask tables (and Switch-DiT's prior, the learned window's curve) hold ``cfg.num_timesteps`` rows."""
    channels, num_classes = dataset_info(cfg.dataset, cfg.data_root or None)
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model, input_size=cfg.image_size, in_channels=channels,
                       num_classes=num_classes if cfg.class_cond else 1, learn_sigma=cfg.learn_sigma,
                       routing=cfg.routing_spec(), num_timesteps=cfg.num_timesteps, text_encoder=cfg.text_encoder)
