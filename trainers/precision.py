"""Numeric precision of a run: what the config asks for and what actually runs.

    fp32       everything in float32
    bf16       DeepSpeed bf16: bf16 weights and activations, fp32 master weights in the optimizer
               (the GPU path of the DiT/DTR papers)
    fp16       DeepSpeed fp16 with loss scaling
    amp-bf16   float32 weights, forward passes under bf16 autocast (matmuls in bf16): the fast
               path on CPUs with AMX or AVX512-BF16, where bf16 GEMMs run several times faster
    auto       resolved when the run starts: bf16 on a GPU, amp-bf16 on a CPU with bf16 matmul
               units, fp32 otherwise; the run records what it resolved to (``precision_ran``)
"""
from __future__ import annotations

import contextlib
from functools import lru_cache

import torch

PRECISIONS = ("fp32", "bf16", "fp16", "amp-bf16", "auto")


@lru_cache(maxsize=1)
def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU has AMX-BF16 or AVX512-BF16 (Linux /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"amx_bf16", "avx512_bf16"} & flags)
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device_type: str) -> str:
    """The precision that runs for ``precision`` on ``device_type`` ("cpu" or "cuda")."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device_type == "cuda":
        return "bf16"
    return "amp-bf16" if cpu_has_bf16_matmul() else "fp32"


def matmul_dtype(precision_ran: str) -> torch.dtype:
    """The dtype matmuls run in under a resolved precision (bf16 for bf16 and amp-bf16)."""
    return {"bf16": torch.bfloat16, "amp-bf16": torch.bfloat16, "fp16": torch.float16}.get(precision_ran,
                                                                                          torch.float32)


def autocast(precision_ran: str, device_type: str):
    """The forward-pass context of a resolved precision (bf16 autocast for amp-bf16, else nothing)."""
    if precision_ran == "amp-bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
