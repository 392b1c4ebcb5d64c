"""Analytic forward cost of a DiT, in multiply-accumulates (MACs) per sample.

Counts every matmul: patch-embed conv, timestep MLP, adaLN modulations, qkv / proj / MLP linears,
attention (QK^T and AV) and the final linear. Elementwise ops, norms, softmax and the routing
masks are free; a learned router (Switch-DiT) adds its experts and gates. The DiT paper's
"GFLOPs" are these MACs / 1e9 (docs/architecture.md).
"""
from __future__ import annotations

import torch
from torch import nn


def forward_macs(model: nn.Module) -> int:
    """MACs for one sample's forward pass, from the model's config (works on meta-device models)."""
    d, depth, p = model.hidden_size, model.depth, model.patch_size
    tokens = (model.input_size // p) ** 2
    mlp_hidden = int(d * model.mlp_ratio)
    freq = model.t_embedder.frequency_embedding_size

    embed = tokens * d * model.in_channels * p * p + freq * d + d * d
    per_block = (
        6 * d * d  # adaLN modulation (once per sample)
        + tokens * 3 * d * d  # qkv
        + 2 * tokens * tokens * d  # QK^T and AV
        + tokens * d * d  # attention output projection
        + 2 * tokens * d * mlp_hidden  # MLP
    )
    final = 2 * d * d + tokens * d * p * p * model.out_channels
    router = getattr(model, "router", None)  # learned routing: Switch-DiT's experts and gates
    extra = router.macs(tokens) if router is not None else 0
    return int(embed + depth * per_block + final + extra)


def gflops(model: nn.Module) -> float:
    """``forward_macs(model) / 1e9``, the unit of the DiT paper's GFLOPs column."""
    return forward_macs(model) / 1e9


def measured_macs(model: nn.Module, batch: int = 1) -> int:
    """MACs per sample measured with ``torch.utils.flop_counter`` (FLOPs / 2) on the model's device."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    x = torch.zeros(batch, model.in_channels, model.input_size, model.input_size, device=device)
    t = torch.zeros(batch, dtype=torch.long, device=device)
    y = torch.zeros(batch, dtype=torch.long, device=device) if model.num_classes > 1 else None
    counter = FlopCounterMode(display=False)
    # The math SDPA backend runs attention as plain matmuls, which the counter sees on every device.
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        model(x, t, y)
    return counter.get_total_flops() // (2 * batch)
