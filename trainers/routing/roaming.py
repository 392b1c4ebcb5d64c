"""MaxRoaming (DTR paper App. F): R-TR's random masks, re-drawn during training.

Every task row keeps exactly ``W = floor(beta * C)`` ones at uniformly drawn channels, one table
per routed block, as R-TR (``random_mask``).  The tables are re-drawn every ``roaming_every``
training steps: step ``s`` (0-based, the step being computed) trains with the tables of *period*
``s // roaming_every``, drawn from a generator seeded by ``(routing_seed, period)``.  The tables
are therefore a pure function of the step: nothing is saved for them beyond the mask buffer the
checkpoint holds anyway, and a resumed run draws what the uninterrupted one drew.

Evaluation and sampling use the tables of the *last trained step's* period,
``(steps_done - 1) // roaming_every`` (period 0 before any step): :func:`sync_roaming` keeps the
EMA model's buffer on the same period as the training model, so the EMA weights in every
checkpoint (``ema.pt``) carry the tables they were last trained with; the final evaluation, FID-k
during training, ``python -m trainers.evaluate`` and a resumed run all read that buffer, and on
several ranks the evaluation copy receives rank 0's buffers with its weights.  A freshly built
model holds period 0 (``RoutingSpec.mask_table``).  Docs: docs/routing.md, "MaxRoaming".
"""
from __future__ import annotations

import numpy as np
import torch

from trainers.routing.masks import random_mask


def roaming_period(step: int, every: int) -> int:
    """The period of training step ``step`` (0-based): ``step // every``."""
    if int(every) < 1:
        raise ValueError(f"roaming_every must be >= 1, got {every}")
    return max(int(step), 0) // int(every)


def period_generator(seed: int, period: int) -> torch.Generator:
    """A torch generator seeded by ``(seed, period)`` alone (numpy's SeedSequence mixes the two)."""
    state = np.random.SeedSequence([int(seed) % 2**32, int(period)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def roaming_tables(num_tasks: int, channels: int, depth: int, beta: float, seed: int, period: int) -> torch.Tensor:
    """(depth, T, C) float32 tables of ``period``: one R-TR table per block from one generator."""
    gen = period_generator(seed, period)
    return torch.stack([random_mask(num_tasks, channels, beta, generator=gen) for _ in range(depth)])


def _buffers(model: torch.nn.Module) -> list[torch.Tensor]:
    """The mask buffers of a MaxRoaming model: DiT's ``routing_masks`` (depth, T, C), or one per
    GroupNorm width of the ADM UNet (``routing_tables.c{C}``, (n_C, T, C))."""
    tables = getattr(model, "routing_tables", None)
    if tables is not None and hasattr(tables, "widths"):
        return [tables.table(c) for c in tables.widths]
    masks = getattr(model, "routing_masks", None)
    return [] if masks is None else [masks]


@torch.no_grad()
def set_roaming_period(model: torch.nn.Module, spec, period: int) -> None:
    """Overwrite ``model``'s mask buffers in place with the tables of ``period`` (same shapes, dtype
    and device, so a DeepSpeed engine wrapping the model keeps working on the same tensors)."""
    for buf in _buffers(model):
        depth, num_tasks, channels = buf.shape
        buf.copy_(roaming_tables(num_tasks, channels, depth, spec.beta, spec.seed, period))
    model._roaming_period = int(period)


def sync_roaming(cfg, step: int, model: torch.nn.Module, ema=None) -> None:
    """The training loop's hook, called before step ``step``: put the training model (and the EMA
    model, on the rank that has one) on the step's period.  Redraws only when the period changes,
    and always on the first call in a process (a resumed run's buffers come from the checkpoint)."""
    if cfg.routing != "maxroaming" or getattr(model, "routing_masks", None) is None:
        return
    period = roaming_period(step, cfg.roaming_every)
    spec = cfg.routing_spec()
    for target in (model, None if ema is None else ema.model):
        if target is not None and getattr(target, "_roaming_period", None) != period:
            set_roaming_period(target, spec, period)
