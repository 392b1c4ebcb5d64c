"""How well a run uses its hardware: model FLOP/s and the fraction of a peak measured on the spot.

Training costs about three forward passes per image (forward, and a backward of twice its
cost), so model FLOP/s = 3 x 2 x forward MACs x images/s (the nanoGPT/PaLM "MFU" convention:
recomputation and elementwise work are not counted).  The peak is not a datasheet number: a
short square GEMM in the run's own precision and thread count, timed when the run starts, so
the ratio says how close the model's step comes to this machine's matmul speed.
"""
from __future__ import annotations

import time

import torch

from trainers.models.flops import forward_macs, measured_macs
from trainers.precision import matmul_dtype

CALIBRATION_SIZE = 1024


def train_flops_per_image(model: torch.nn.Module) -> float:
    """FLOPs of one training image (3 forward passes' worth, 2 FLOPs per MAC)."""
    try:
        macs = forward_macs(model)  # analytic (DiT and its routed variants)
    except AttributeError:
        macs = measured_macs(model)  # any other model (ADM): counted on one forward pass
    return 6.0 * macs


def peak_matmul_flops(precision_ran: str, device: torch.device, seconds: float = 0.25) -> float:
    """FLOP/s of a ``CALIBRATION_SIZE``-square matmul in the run's precision on ``device``."""
    dtype = matmul_dtype(precision_ran)
    n = CALIBRATION_SIZE
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b  # warm-up (kernel choice, caches)
    sync()
    reps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        reps += 1
    sync()
    return 2.0 * n ** 3 * reps / (time.perf_counter() - started)
