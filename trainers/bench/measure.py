"""Timing: every speed case becomes a runner whose ``unit()`` does one unit of work (a training
step, a sampling batch, an FID evaluation), and :func:`interleave` times all runners round-robin,
unit by unit, so every round holds measurements of every case taken seconds apart.

Why interleaved: on a shared 2-core box the speed of the machine drifts by tens of percent
within a minute (other jobs come and go).  Timing all vanilla steps, then all DTR steps would
fold that drift into the DTR/vanilla ratio; timing them alternately in every round and forming
the ratio per round cancels most of it, and the spread of the per-round ratios is the noise band
(platform/bench/gate.py).  Two more defences against the neighbours: the default clock is the
process CPU time (the time our thread actually ran, not the time it waited for a core; measured
here it cut the per-round ratio spread roughly in half vs wall time), and a round keeps each
case's fastest unit.

Training steps go through the real path of trainers/training/loop.py (steps.py holds those
runners); the GEMM runners (the calibration chain, the matmul peak), sampling and FID are here.
A runner may carry ``info`` (a dict of constants such as FLOPs per unit): :func:`interleave`
hands it on in :attr:`Timings.info`.
"""
from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from trainers.bench.cases import CalibCase, FidCase, MtlStepCase, PeakCase, PresetStepCase, SampleCase, TrainStepCase
from trainers.bench.steps import PresetStepRunner, TrainStepRunner

CLOCKS = ("cpu", "wall")


class Runner(Protocol):
    name: str
    repeats: int      # units timed per round (the round's value is the fastest)
    per_unit: int     # divide a unit's time by this (images per sampling batch), else 1

    def unit(self) -> None: ...


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device) -> tuple[float, float]:
    """(process CPU seconds, wall seconds) of ``fn()`` with the garbage collector held off (a full
    collection costs ~0.2-0.4 s with torch, DeepSpeed and MLflow loaded: :func:`interleave` runs one
    per round, outside the timings)."""
    gc.collect(0)
    enabled = gc.isenabled()
    gc.disable()
    try:
        _sync(device)
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        _sync(device)
        return time.process_time() - c0, time.perf_counter() - w0
    finally:
        if enabled:
            gc.enable()


@dataclass
class Timings:
    """Per case, one value per round (seconds per unit on ``clock``), the clocks' totals, and each
    runner's ``info`` (constants its metrics need, e.g. FLOPs per unit)."""

    clock: str
    rounds: dict[str, list[float]] = field(default_factory=dict)
    info: dict[str, dict] = field(default_factory=dict)
    cpu_total: float = 0.0
    wall_total: float = 0.0

    @property
    def contention(self) -> float:
        """wall / CPU time of the timed work: ~1 on an idle machine, larger when others share the cores
        (with one thread; several threads lower it)."""
        return self.wall_total / self.cpu_total if self.cpu_total else math.nan


def interleave(runners: list, rounds: int, warmup: int = 1, clock: str = "cpu", device=None,
               on_round: Callable[[int, dict], None] | None = None) -> Timings:
    """Time ``runners`` round-robin: ``warmup`` untimed passes, then ``rounds`` rounds.

    In a round the runners take turns unit by unit (vanilla step, DTR step, R-TR step, ...,
    vanilla step, ...), each ``repeats`` times; the order rotates by one every round.  A case's
    value for the round is its fastest unit: on a shared machine a slower repeat is interference,
    not the code.  ``clock="cpu"`` measures process CPU time (robust to time-sharing of the cores
    with other jobs; use with one thread), ``"wall"`` wall time (GPUs, several threads).
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    device = torch.device(device or "cpu")
    for _ in range(warmup):
        for runner in runners:
            runner.unit()
    out = Timings(clock, {r.name: [] for r in runners}, {r.name: dict(getattr(r, "info", {})) for r in runners})
    k = len(runners)
    for r in range(rounds):
        gc.collect()
        order = runners[r % k:] + runners[:r % k]
        units: dict[str, list[float]] = {x.name: [] for x in order}
        for j in range(max(x.repeats for x in runners)):
            for runner in order:
                if j < runner.repeats:
                    cpu, wall = timed(runner.unit, device)
                    out.cpu_total += cpu
                    out.wall_total += wall
                    units[runner.name].append((cpu if clock == "cpu" else wall) / runner.per_unit)
        this_round = {name: min(v) for name, v in units.items()}
        for name, v in this_round.items():
            out.rounds[name].append(v)
        if on_round:
            on_round(r, this_round)
    return out


# --- runners ------------------------------------------------------------------------------------

class CalibRunner:
    """A fixed chain of GEMMs in plain torch: how fast the machine is right now."""

    def __init__(self, case: CalibCase, device: torch.device):
        self.name, self.case, self.device = case.name, case, device
        self.repeats, self.per_unit = case.repeats, 1
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(case.rows, case.width, generator=g).to(device)
        self.w = (torch.randn(case.width, 4 * case.width, generator=g) / case.width**0.5).to(device)

    def unit(self) -> None:
        h = self.x
        for _ in range(self.case.chain):
            h = torch.tanh(h @ self.w) @ self.w.T
        self.out = h


class PeakRunner:
    """One unit = a ``case.size``-square matmul in the dtype of the precision ``case.precision``
    resolves to (bf16 for bf16/amp-bf16, fp16, else fp32), like
    trainers.training.efficiency.peak_matmul_flops; timed on the bench's clock, interleaved with
    the steps it is compared with, so the MFU is a ratio of two things measured in the same rounds."""

    def __init__(self, case: PeakCase, device: torch.device):
        from trainers.precision import matmul_dtype, resolve_precision
        self.name, self.case, self.device = case.name, case, device
        self.repeats, self.per_unit = case.repeats, 1
        precision_ran = resolve_precision(case.precision, device.type)
        dtype = matmul_dtype(precision_ran)
        g = torch.Generator().manual_seed(0)
        self.a, self.b = (torch.randn(case.size, case.size, generator=g).to(device=device, dtype=dtype)
                          for _ in range(2))
        self.info = {"flops_per_unit": 2.0 * case.size ** 3, "precision_ran": precision_ran}

    def unit(self) -> None:
        self.out = self.a @ self.b


class SampleRunner:
    """One unit = DDIM sampling of ``images_per_round`` images (one batch) through
    trainers.evaluation.evaluate.generate_samples; timed per image."""

    def __init__(self, case: SampleCase, device: torch.device):
        from trainers.config import RunConfig
        from trainers.data.registry import dataset_info
        from trainers.diffusion.gaussian import GaussianDiffusion
        from trainers.models import build_model
        self.name, self.case, self.device = case.name, case, device
        self.repeats, self.per_unit = case.repeats, case.images_per_round
        channels, num_classes = dataset_info(case.dataset)
        self.cfg = RunConfig(model=case.model, dataset=case.dataset, sampler=case.sampler,
                             sample_steps=case.sample_steps, seed=case.seed, progress=False)
        torch.manual_seed(case.seed)
        self.model = build_model(case.model, input_size=self.cfg.image_size, in_channels=channels,
                                 num_classes=num_classes, learn_sigma=self.cfg.learn_sigma).to(device).eval()
        self.diffusion = GaussianDiffusion(self.cfg.schedule, self.cfg.num_timesteps, learn_sigma=self.cfg.learn_sigma)

    def unit(self) -> None:
        from trainers.evaluation.evaluate import generate_samples
        self.out, _ = generate_samples(self.model, self.diffusion, self.cfg, self.case.images_per_round,
                                       device=self.device, batch=self.case.images_per_round)



class FidRunner:
    """trainers.evaluation.metrics.evaluate_samples on fixed random images (the score is
    irrelevant, the work is the same); the classifier and the reference statistics are built (or
    loaded from the cache) in ``__init__``, outside the timing."""

    def __init__(self, case: FidCase, device: torch.device):
        from trainers.data.registry import dataset_info
        from trainers.evaluation.metrics import reference
        self.name, self.case, self.device = case.name, case, device
        self.repeats, self.per_unit = case.repeats, 1
        channels, _ = dataset_info(case.dataset)
        g = torch.Generator().manual_seed(case.seed)
        self.samples = torch.rand((case.samples, channels, 32, 32), generator=g) * 2 - 1
        reference(case.dataset, case.feature_set, "train", case.ref_n, image_size=32, device=device)

    def unit(self) -> None:
        import warnings

        from trainers.evaluation.metrics import evaluate_samples
        with warnings.catch_warnings():  # random images: singular covariances, degenerate precision/recall
            warnings.simplefilter("ignore")
            self.out = evaluate_samples(self.samples, self.case.dataset, self.case.feature_set,
                                        ref_n=self.case.ref_n, device=self.device)



def build_runner(case, device: torch.device, engine: str = "deepspeed") -> Runner:
    if isinstance(case, MtlStepCase):
        from trainers.bench.mtl_steps import MtlStepRunner
        return MtlStepRunner(case, device, engine)
    if isinstance(case, TrainStepCase):
        return TrainStepRunner(case, device, engine)
    if isinstance(case, PresetStepCase):
        return PresetStepRunner(case, device, engine)
    if isinstance(case, PeakCase):
        return PeakRunner(case, device)
    if isinstance(case, SampleCase):
        return SampleRunner(case, device)
    if isinstance(case, FidCase):
        return FidRunner(case, device)
    if isinstance(case, CalibCase):
        return CalibRunner(case, device)
    raise TypeError(f"not a speed case: {case!r}")
