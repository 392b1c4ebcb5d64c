"""DiT models with optional Denoising Task Routing: registry, builder and FLOP counter."""
from .dit import DIT_SIZES, DiT, DiT_models, DiTBlock, build_model, resolve_mask_table
from .flops import forward_macs, gflops, measured_macs

__all__ = [
    "DIT_SIZES",
    "DiT",
    "DiTBlock",
    "DiT_models",
    "build_model",
    "forward_macs",
    "gflops",
    "measured_macs",
    "resolve_mask_table",
]
