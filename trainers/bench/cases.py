"""The fixed, named benchmark suite: what is measured, at which size, with which seeds.

Two scales: ``full`` is the real suite (DiT-S/2 training steps, the one `make bench` runs
and the committed baseline describes); ``tiny`` is the same suite shrunk for the tests
(DiT-T/4 everywhere, a few images).  Every case has a ``fingerprint``: a hash of its
definition plus the measuring conditions (threads, engine, device).  The gate compares a
metric with its baseline only when the fingerprints agree, so changing a case here shows
up as ``changed`` until the baseline is re-recorded with ``--update-baseline``.

Speed cases (interleaved round-robin, see measure.py):
  calib          a fixed GEMM chain in plain torch: the machine's speed in this run
  vanilla        one training step of plain DiT through DiffusionObjective + optimizer + EMA
  dtr, rtr       the same with DTR / R-TR routing (beta 0.8, alpha 4)
  switch         the same with Switch-DiT (only when routing kind "learned" exists)
  sample         DDIM 25-step sampling on DiT-T/4 (Fashion-MNIST shape), time per image
  fid            domain-feature FID + precision/recall of 2k samples against the cached reference
Quality cases (trainers.training.run.train, several seeds): FID-k of vanilla and DTR.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

SCALES = ("full", "tiny")
ROUTED = {"dtr": "DTR", "rtr": "R-TR", "switch": "Switch-DiT"}


@dataclass(frozen=True)
class TrainStepCase:
    """Training steps on latent-shaped random data (the model's cost does not depend on the data)."""

    name: str
    routing: str                       # RoutingSpec kind
    model: str = "DiT-S/2"
    batch: int = 2
    shape: tuple[int, int, int] = (4, 32, 32)   # SD-VAE latent of a 256px image
    num_classes: int = 1000
    steps_per_round: int = 3
    beta: float = 0.8
    alpha: float = 4.0
    seed: int = 0
    kind: str = "train_step"

    def describe(self) -> str:
        return (f"{self.model} {ROUTED.get(self.name, self.name)} train step, batch {self.batch} x "
                f"{'x'.join(map(str, self.shape))}, {self.steps_per_round} steps/round")


@dataclass(frozen=True)
class SampleCase:
    name: str = "sample"
    model: str = "DiT-T/4"
    dataset: str = "fashion_mnist"
    sampler: str = "ddim"
    sample_steps: int = 25
    images_per_round: int = 16
    repeats: int = 1
    seed: int = 0
    kind: str = "sample"

    def describe(self) -> str:
        return (f"{self.model} {self.sampler.upper()} {self.sample_steps} steps, "
                f"{self.images_per_round} images/round (per image)")


@dataclass(frozen=True)
class FidCase:
    name: str = "fid"
    dataset: str = "fashion_mnist"
    feature_set: str = "domain"
    samples: int = 2000
    ref_n: int | None = None           # None: the whole train split, the reference training runs use
    repeats: int = 1
    seed: int = 0
    kind: str = "fid"

    def describe(self) -> str:
        ref = "whole train split" if self.ref_n is None else f"{self.ref_n} real"
        return f"{self.feature_set}-feature FID+P/R of {self.samples} samples vs cached reference ({ref})"


@dataclass(frozen=True)
class CalibCase:
    name: str = "calib"
    rows: int = 256
    width: int = 384
    chain: int = 4
    repeats: int = 3
    kind: str = "calib"

    def describe(self) -> str:
        return (f"plain torch GEMM chain {self.rows}x{self.width}x{4 * self.width} x{2 * self.chain} "
                "(machine speed)")


@dataclass(frozen=True)
class QualityCase:
    """FID-k after a short training run (trainers.training.run.train), one run per seed."""

    name: str
    routing: str
    preset: str = "laptop"
    overrides: dict = field(default_factory=dict)
    seeds: tuple[int, ...] = (0, 1, 2)
    kind: str = "quality"

    def describe(self) -> str:
        o = self.overrides
        return (f"{self.preset} preset {ROUTED.get(self.name, self.name)}: {o.get('steps')} steps, "
                f"FID-{o.get('final_eval_samples')} ({o.get('feature_set', 'domain')}), seeds {list(self.seeds)}")


Case = TrainStepCase | SampleCase | FidCase | CalibCase | QualityCase


@dataclass(frozen=True)
class Suite:
    scale: str
    rounds: int
    warmup: int
    speed: tuple
    quality: tuple


def _speed(scale: str, learned: bool) -> tuple:
    names = [("vanilla", "none"), ("dtr", "dtr"), ("rtr", "random")] + ([("switch", "learned")] if learned else [])
    if scale == "full":
        train = [TrainStepCase(n, r) for n, r in names]
        return (CalibCase(), *train, SampleCase(), FidCase())
    train = [TrainStepCase(n, r, model="DiT-T/4", steps_per_round=5) for n, r in names]
    return (CalibCase(rows=64, chain=2), *train, SampleCase(sample_steps=5, images_per_round=4, repeats=2),
            FidCase(samples=256, ref_n=2000))


def _quality(scale: str) -> tuple:
    if scale == "full":
        common = {"steps": 300, "eval_every": 0, "ckpt_every": 0, "final_eval_samples": 1000, "progress": False}
        return tuple(QualityCase(n, r, "laptop", common) for n, r in (("vanilla", "none"), ("dtr", "dtr")))
    common = {"steps": 10, "eval_every": 0, "ckpt_every": 0, "final_eval_samples": 32, "sample_steps": 5,
              "progress": False}
    return tuple(QualityCase(n, r, "smoke", common, seeds=(0, 1)) for n, r in (("vanilla", "none"), ("dtr", "dtr")))


def suite(scale: str = "full") -> Suite:
    """The named suite at ``scale``; Switch-DiT joins when routing kind "learned" exists."""
    from trainers.routing.spec import ROUTING_KINDS
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    learned = "learned" in ROUTING_KINDS
    return Suite(scale=scale, rounds=12 if scale == "full" else 5, warmup=1,
                 speed=_speed(scale, learned), quality=_quality(scale))


def fingerprint(*parts) -> str:
    """Short stable hash of case definitions and measuring conditions (dataclasses or dicts)."""
    blob = json.dumps([asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts],
                      sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]
