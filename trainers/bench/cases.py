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
  laptop         training steps of the laptop preset's model as the preset trains it (model, image
                 size, micro-batch, precision read from trainers.presets when the suite is built), in
                 the precision the preset resolves to on this machine (``auto`` -> amp-bf16 on AMX /
                 AVX512-BF16 CPUs); laptop_fp32 the same steps in fp32 (laptop_auto, in ``auto``,
                 when the preset itself runs fp32); peak a square GEMM in the preset's precision
                 (the machine's matmul peak for the MFU)
  mtl_vanilla    a training step of the laptop preset's model at micro-batch 32 (fp32, one micro-batch a
  pcgrad         step) with vanilla weighting, and the same step with ANT's PCGrad / Nash-MTL over 8
  nash_mtl       timestep clusters (trainers/training/gradient_combination.py): their cost ratios (full scale)
Fresh processes (launched one after the other, not interleaved; see startup.py):
  startup        ``python -m trainers.train --preset laptop --steps 1 ...``: launch -> first step, and
                 the process's whole wall time
  dsinit         ``import deepspeed`` + trainers' ``init_deepspeed_distributed`` in a fresh process
  dsinit_jit     the same with DeepSpeed's own ``init_distributed`` (JIT-builds its shm op on CPU,
                 ~1.5 min): optional, only when named in ``--cases``
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


@dataclass(frozen=True)
class PresetStepCase:
    """Training steps of a preset's model at the preset's micro-batch (one micro-batch a step), on
    random data of its dataset's shape, in ``precision``; :func:`preset_step_case` reads the preset."""

    name: str
    preset: str
    model: str
    dataset: str
    image_size: int
    micro_batch: int
    precision: str                     # as configured ("auto" resolves on the device when measured)
    routing: str = "none"
    steps_per_round: int = 2
    group: tuple[str, ...] = ()        # measured together: the two precisions and the peak
    seed: int = 0
    kind: str = "preset_step"

    @property
    def needs(self) -> tuple[str, ...]:
        return self.group

    def describe(self) -> str:
        return (f"{self.preset} preset: {self.model} train step, micro-batch {self.micro_batch} x "
                f"{self.image_size}px {self.dataset}, precision {self.precision}, {self.steps_per_round} steps/round")


@dataclass(frozen=True)
class MtlStepCase:
    """A training step of ``preset``'s model (one micro-batch a step, random data of its dataset's
    shape, fp32) with loss weighting ``weighting``: vanilla, or ANT's PCGrad / Nash-MTL over
    ``uw_clusters`` timestep clusters (combined by trainers.training.gradient_combination)."""

    name: str
    weighting: str
    preset: str
    model: str
    dataset: str
    image_size: int
    micro_batch: int
    uw_clusters: int = 8
    precision: str = "fp32"
    steps_per_round: int = 1
    group: tuple[str, ...] = ()        # measured together: vanilla and the two combinations
    seed: int = 0
    kind: str = "mtl_step"

    @property
    def needs(self) -> tuple[str, ...]:
        return self.group

    def describe(self) -> str:
        return (f"{self.preset} preset: {self.model} train step, {self.weighting} over {self.uw_clusters} clusters, "
                f"micro-batch {self.micro_batch} x {self.image_size}px {self.dataset}, {self.precision}")


def mtl_cases(preset: str, *, micro_batch: int | None = None) -> tuple:
    """``preset``'s step (model, data shape, micro-batch read from trainers.presets) with vanilla
    weighting, PCGrad and Nash-MTL: the per-step cost of ANT's gradient combination."""
    from trainers.presets import preset_config
    cfg = preset_config(preset)
    group = ("mtl_vanilla", "pcgrad", "nash_mtl")
    step = {"preset": preset, "model": cfg.model, "dataset": cfg.dataset, "image_size": cfg.image_size,
            "micro_batch": micro_batch or cfg.micro_batch, "group": group}
    return tuple(MtlStepCase(name, weighting, **step) for name, weighting in zip(group, ("vanilla", *group[1:])))


@dataclass(frozen=True)
class PeakCase:
    """A square GEMM in the precision of ``preset``: the matmul peak the MFU divides by."""

    name: str = "peak"
    preset: str = "laptop"
    precision: str = ""                # the preset's precision as configured
    size: int = 1024                   # trainers.training.efficiency.CALIBRATION_SIZE
    repeats: int = 3
    group: tuple[str, ...] = ()
    kind: str = "peak"

    @property
    def needs(self) -> tuple[str, ...]:
        return self.group

    def describe(self) -> str:
        return f"{self.size}-square matmul in the {self.preset} preset's precision ({self.precision}): machine peak"


@dataclass(frozen=True)
class StartupCase:
    """Fresh ``python -m trainers.train`` processes of ``preset`` that train one step and stop."""

    name: str = "startup"
    preset: str = "laptop"
    launches: int = 3
    kind: str = "startup"
    needs = ()
    optional = False

    def describe(self) -> str:
        return (f"fresh `python -m trainers.train --preset {self.preset} --steps 1` x{self.launches}: launch -> "
                "first step (metrics.jsonl), and process wall time")


@dataclass(frozen=True)
class DsInitCase:
    """``import deepspeed`` + init_distributed in fresh processes, each with an empty TORCH_EXTENSIONS_DIR;
    ``declared_ops=False`` calls DeepSpeed's own init_distributed (a JIT build of its shm op on CPU)."""

    name: str = "dsinit"
    declared_ops: bool = True
    launches: int = 3
    kind: str = "dsinit"
    needs = ()

    @property
    def optional(self) -> bool:
        return not self.declared_ops   # minutes of compiling: only when named in --cases

    def describe(self) -> str:
        how = ("trainers' init_deepspeed_distributed (op table declared)" if self.declared_ops
               else "deepspeed.init_distributed as shipped (probes/JIT-builds ops)")
        return f"fresh process: import deepspeed + {how}, x{self.launches}"


Case = (TrainStepCase | SampleCase | FidCase | CalibCase | QualityCase | PresetStepCase | PeakCase | StartupCase
        | DsInitCase | MtlStepCase)
PROCESS_CASES = (StartupCase, DsInitCase)   # fresh processes, launched one by one (not interleaved)


def needs(case) -> tuple[str, ...]:
    """The cases a selected case is measured with (its ratios' denominators, the MFU's peak)."""
    return getattr(case, "needs", ("calib", "vanilla"))


def optional(case) -> bool:
    """Whether the case runs only when named in ``--cases``."""
    return bool(getattr(case, "optional", False))


def efficiency_cases(preset: str, *, micro_batch: int | None = None, steps_per_round: int = 2,
                     peak_repeats: int = 3) -> tuple:
    """``preset``'s training step as the preset defines it now (read from trainers.presets, never
    hard-coded here) in its own precision (case ``<preset>``: the MFU) and in the other side of the
    fp32 / reduced-precision comparison (``<preset>_fp32``, or ``<preset>_auto`` when the preset
    itself runs fp32), and the matmul peak in the preset's precision."""
    from trainers.presets import preset_config
    cfg = preset_config(preset)
    other = "auto" if cfg.precision == "fp32" else "fp32"
    group = (preset, f"{preset}_{other}", "peak")
    step = {"preset": preset, "model": cfg.model, "dataset": cfg.dataset, "image_size": cfg.image_size,
            "micro_batch": micro_batch or cfg.micro_batch, "routing": cfg.routing,
            "steps_per_round": steps_per_round, "group": group}
    return (PresetStepCase(group[0], precision=cfg.precision, **step),
            PresetStepCase(group[1], precision=other, **step),
            PeakCase(preset=preset, precision=cfg.precision, repeats=peak_repeats, group=group))


@dataclass(frozen=True)
class Suite:
    scale: str
    rounds: int
    warmup: int
    speed: tuple
    quality: tuple


def _efficiency(scale: str) -> tuple:
    """The laptop preset's step in its own precision and in fp32, the matmul peak, its step with PCGrad and
    Nash-MTL, the fresh processes."""
    full = scale == "full"
    launches = 3 if full else 1
    # PCGrad / Nash-MTL at half the laptop micro-batch (32: the case stays under 2 minutes; the ratios
    # measured 8.0 / 7.3 at 64 and 7.4 / 7.6 at 32 in one check); full scale only (tests: test_bench_mtl.py)
    mtl = mtl_cases("laptop", micro_batch=32) if full else ()
    return (*efficiency_cases("laptop", micro_batch=None if full else 8, peak_repeats=3 if full else 2),
            *mtl, StartupCase(launches=launches), DsInitCase(launches=launches),
            DsInitCase("dsinit_jit", declared_ops=False, launches=1))


def _speed(scale: str, learned: bool) -> tuple:
    names = [("vanilla", "none"), ("dtr", "dtr"), ("rtr", "random")] + ([("switch", "learned")] if learned else [])
    if scale == "full":
        train = [TrainStepCase(n, r) for n, r in names]
        return (CalibCase(), *train, SampleCase(), FidCase(), *_efficiency(scale))
    train = [TrainStepCase(n, r, model="DiT-T/4", steps_per_round=5) for n, r in names]
    return (CalibCase(rows=64, chain=2), *train, SampleCase(sample_steps=5, images_per_round=4, repeats=2),
            FidCase(samples=256, ref_n=2000), *_efficiency(scale))


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
