"""The GPU check (``python -m platform.bench --suite gpu``): what a DiT training step makes of one GPU.

Measured in one run, on random latent-shaped data (the cost of a step does not depend on the data):

  peak        the best of several timed ``size``-square bf16 GEMMs: this GPU's bf16 matmul peak, the
              denominator of the MFU (measured, not a datasheet number)
  training    per model (DiT-B/2 and DiT-L/2 at 32x32x4 latents, micro-batch 32): one step = forward
              under ``torch.autocast(device, bfloat16)`` with fp32 weights, the diffusion loss
              (DiffusionObjective, as the training loop), backward and a torch AdamW step (fused on
              CUDA); no EMA update.  Vanilla and DTR (beta 0.8, alpha 4) are timed alternately, round
              by round, with CUDA events; warm-up steps are not timed.  images/s, model FLOP/s
              (images/s x 6 x forward MACs, trainers.training.efficiency) and MFU (/ peak) from the
              median round; the DTR/vanilla step-time ratio is the median of the per-round ratios.
  sampling    the trained, EMA-free vanilla model sampling with classifier-free guidance (one doubled
              batch, trainers.diffusion.sampling.sample under bf16 autocast): a few DDPM and DDIM steps
              timed, scaled to images/s of a 250-step DDPM and a 50-step DDIM run.
  deepspeed   optional (engine "deepspeed"): one model's vanilla step through a DeepSpeed bf16 engine
              (+ EMA), as trainers/training/loop.py; skipped with a note when deepspeed cannot be imported.

Targets: MFU of the scale's MFU model >= 40 %, DTR step-time ratio <= 1.01 for every model (the DTR
paper, App. E: 3.72 vs 3.71 it/s for DiT-L/2).  Scale "tiny" runs the same code on DiT-T/4 at 16x16
latents for a CPU smoke test.  Module-level imports: torch and project modules that need only torch and
numpy (tests/test_gpu_check.py checks it), so the check runs on a box with nothing else installed.
"""
from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from trainers.config import RunConfig
from trainers.diffusion.gaussian import GaussianDiffusion
from trainers.diffusion.sampling import sample
from trainers.models import build_model
from trainers.training.efficiency import train_flops_per_image
from trainers.training.objective import DiffusionObjective

PRECISION = "amp-bf16"          # fp32 weights, forward under bf16 autocast (trainers/precision.py)
DTR = {"routing": "dtr", "beta": 0.8, "alpha": 4.0}
MFU_TARGET = 0.40
DTR_RATIO_TARGET = 1.01
CFG_SCALE = 1.5                 # DiT's FID setting; any scale != 1 doubles the batch
FULL_SAMPLING = {"ddpm": 250, "ddim": 50}   # the runs the timed steps are scaled to


@dataclass(frozen=True)
class Scale:
    models: tuple[str, ...]
    mfu_model: str                  # the model the MFU target applies to
    latent: tuple[int, int, int]    # (C, H, W)
    num_classes: int
    batch: int                      # training micro-batch (per GPU)
    rounds: int
    steps_per_round: int
    warmup: int                     # untimed steps per trainer
    peak_size: int
    peak_tries: int
    peak_reps: int                  # GEMMs per try
    sample_batch: int
    sample_steps: int               # sampling steps timed per try


SCALES = {
    "full": Scale(("DiT-B/2", "DiT-L/2"), "DiT-B/2", (4, 32, 32), 1000, 32, 5, 10, 5, 8192, 5, 10, 32, 5),
    "tiny": Scale(("DiT-T/4",), "DiT-T/4", (4, 16, 16), 10, 4, 2, 2, 1, 256, 2, 2, 4, 2),
}


@dataclass
class GpuCheckOptions:
    scale: str = "full"
    device: str = "cuda"
    batch: int | None = None        # None: the scale's
    rounds: int | None = None
    warmup: int | None = None
    compile: bool = False           # torch.compile the training models (warm-up pays the compilation)
    engine: str = "torch"           # "deepspeed": also time a DeepSpeed bf16 engine step (optional)
    seed: int = 0

    def spec(self) -> Scale:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {tuple(SCALES)}, got {self.scale!r}")
        s = SCALES[self.scale]
        for name, v in (("batch", self.batch), ("rounds", self.rounds)):
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if self.warmup is not None and self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.engine not in ("torch", "deepspeed"):
            raise ValueError(f"engine must be torch or deepspeed, got {self.engine!r}")
        pick = lambda v, default: default if v is None else v  # noqa: E731
        return Scale(**{**asdict(s), "batch": pick(self.batch, s.batch), "rounds": pick(self.rounds, s.rounds),
                        "warmup": pick(self.warmup, s.warmup)})


@contextlib.contextmanager
def matmul_settings():
    """TF32 for the fp32 matmuls outside autocast, bf16 reductions allowed, cuDNN autotuning off; the
    previous values come back afterwards.  Yields the settings (recorded in the result)."""
    m, c = torch.backends.cuda.matmul, torch.backends.cudnn
    old = (m.allow_tf32, m.allow_bf16_reduced_precision_reduction, c.allow_tf32, c.benchmark,
           torch.get_float32_matmul_precision())
    m.allow_tf32, m.allow_bf16_reduced_precision_reduction, c.allow_tf32, c.benchmark = True, True, True, False
    torch.set_float32_matmul_precision("high")
    try:
        yield {"cuda.matmul.allow_tf32": True, "cuda.matmul.allow_bf16_reduced_precision_reduction": True,
               "cudnn.allow_tf32": True, "cudnn.benchmark": False, "float32_matmul_precision": "high",
               "autocast": "bfloat16", "weights": "float32"}
    finally:
        m.allow_tf32, m.allow_bf16_reduced_precision_reduction, c.allow_tf32, c.benchmark = old[:4]
        torch.set_float32_matmul_precision(old[4])


def elapsed(fn: Callable[[], object], device: torch.device, n: int = 1) -> float:
    """Seconds per call over ``n`` back-to-back calls of ``fn``: CUDA events around the queued work
    on a GPU (what the GPU spent, launch gaps included), ``time.perf_counter`` elsewhere."""
    if device.type != "cuda":
        started = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - started) / n
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(device)
    start.record()
    for _ in range(n):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000.0 / n


def peak_matmul(spec: Scale, device: torch.device) -> dict:
    """Best FLOP/s of ``peak_tries`` tries of ``peak_reps`` square bf16 GEMMs (one untimed first)."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(spec.peak_size, spec.peak_size, generator=g).to(device, torch.bfloat16) for _ in range(2))
    out = torch.empty_like(a)
    gemm = lambda: torch.matmul(a, b, out=out)  # noqa: E731
    elapsed(gemm, device, 2)
    tries = [2.0 * spec.peak_size ** 3 / elapsed(gemm, device, spec.peak_reps) for _ in range(spec.peak_tries)]
    return {"size": spec.peak_size, "dtype": "bfloat16", "tries_flops_per_s": tries, "flops_per_s": max(tries)}


class StepTrainer:
    """One training step of ``model_name`` with ``routing`` (a run-config routing kind) at the scale's
    latent shape and micro-batch, on a pool of fixed random batches (same seed: same batches and
    initial weights for vanilla and DTR, so the two do the same work apart from the routing)."""

    POOL = 4

    def __init__(self, model_name: str, routing: str, spec: Scale, device: torch.device, *,
                 compile_model: bool = False, seed: int = 0):
        self.cfg = RunConfig(model=model_name, routing=routing, beta=DTR["beta"], alpha=DTR["alpha"],
                             dataset="latents", image_size=spec.latent[-1], global_batch=spec.batch,
                             micro_batch=spec.batch, precision=PRECISION, seed=seed, progress=False)
        torch.manual_seed(seed)
        self.model = build_model(model_name, input_size=spec.latent[-1], in_channels=spec.latent[0],
                                 num_classes=spec.num_classes, routing=self.cfg.routing_spec()).to(device)
        self.diffusion = GaussianDiffusion(self.cfg.schedule, self.cfg.num_timesteps, learn_sigma=True)
        self.objective = DiffusionObjective(self.cfg, self.model, self.diffusion, PRECISION).to(device)
        if compile_model:
            self.objective.model = torch.compile(self.model)
        self.optimizer = torch.optim.AdamW(self.objective.param_groups(), lr=self.cfg.lr,
                                           weight_decay=self.cfg.weight_decay, fused=device.type == "cuda")
        self.flops_per_image = train_flops_per_image(self.model)
        self.params = sum(p.numel() for p in self.model.parameters())
        g = torch.Generator().manual_seed(seed)
        n, shape = spec.batch, spec.latent
        self.pool = [(torch.randn((n, *shape), generator=g), torch.randint(0, spec.num_classes, (n,), generator=g),
                      *self.objective.sample_timesteps(n, g), torch.randn((n, *shape), generator=g))
                     for _ in range(self.POOL)]
        self.pool = [tuple(v.to(device) for v in batch) for batch in self.pool]
        self.steps = 0

    def step(self) -> None:
        x, y, t, cluster, noise = self.pool[self.steps % self.POOL]
        self.steps += 1
        loss, _ = self.objective(x, y, t, noise, cluster)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def time_interleaved(trainers: list[StepTrainer], spec: Scale, device: torch.device) -> list[list[float]]:
    """Per trainer, seconds per step of every round; the trainers alternate (order rotating per round)."""
    for trainer in trainers:
        for _ in range(spec.warmup):
            trainer.step()
    out: list[list[float]] = [[] for _ in trainers]
    for r in range(spec.rounds):
        order = list(range(len(trainers)))
        order = order[r % len(order):] + order[:r % len(order)]
        for i in order:
            out[i].append(elapsed(trainers[i].step, device, spec.steps_per_round))
    return out


def sampling_speed(trainer: StepTrainer, spec: Scale, device: torch.device) -> dict:
    """Images/s of the EMA-free model sampling with CFG, from a few timed steps of each sampler."""
    shape = (spec.sample_batch, *spec.latent)
    y = torch.arange(spec.sample_batch) % spec.num_classes
    g = torch.Generator().manual_seed(0)

    def run(method: str, steps: int) -> None:
        sample(trainer.model, trainer.diffusion, shape, steps=steps, method=method, y=y, cfg_scale=CFG_SCALE,
               generator=g, precision=PRECISION)

    out = {"batch": spec.sample_batch, "cfg_scale": CFG_SCALE, "steps_timed": spec.sample_steps}
    for method, full in FULL_SAMPLING.items():
        run(method, 1)  # warm-up
        per_step = min(elapsed(lambda: run(method, spec.sample_steps), device) / spec.sample_steps
                       for _ in range(2))
        out[f"{method}_step_ms"] = per_step * 1000.0
        out[f"{method}{full}_images_per_s"] = spec.sample_batch / (per_step * full)
    # CFG doubles the batch: 2 forward passes of 2 FLOPs per MAC per image and step
    out["model_flops_per_s"] = 4.0 * trainer.flops_per_image / 6.0 * spec.sample_batch / (out["ddpm_step_ms"] / 1e3)
    return out


def model_result(name: str, spec: Scale, device: torch.device, peak: float, opts: GpuCheckOptions,
                 say: Callable[[str], None]) -> dict:
    """Vanilla and DTR training steps of ``name`` timed interleaved, then the vanilla model's sampling."""
    say(f"  {name}: building vanilla and DTR (beta {DTR['beta']}, alpha {DTR['alpha']:g}), batch {spec.batch} x "
        f"{'x'.join(map(str, spec.latent))}")
    pair = [StepTrainer(name, kind, spec, device, compile_model=opts.compile, seed=opts.seed)
            for kind in ("none", DTR["routing"])]
    rounds = time_interleaved(pair, spec, device)
    vanilla = statistics.median(rounds[0])
    ratios = [d / v for v, d in zip(*rounds)]
    images = spec.batch / vanilla
    flops = images * pair[0].flops_per_image
    out = {"params": pair[0].params, "train_flops_per_image": pair[0].flops_per_image,
           "step_ms": vanilla * 1e3, "step_ms_dtr": statistics.median(rounds[1]) * 1e3,
           "step_ms_rounds": [t * 1e3 for t in rounds[0]], "step_ms_dtr_rounds": [t * 1e3 for t in rounds[1]],
           "images_per_s": images, "images_per_s_dtr": spec.batch / statistics.median(rounds[1]),
           "model_flops_per_s": flops, "model_tflops_per_s": flops / 1e12, "mfu": flops / peak,
           "dtr_step_ratio": statistics.median(ratios), "dtr_step_ratio_rounds": ratios}
    say(f"    step {out['step_ms']:.2f} ms (DTR {out['step_ms_dtr']:.2f} ms), {images:.1f} img/s, "
        f"{flops / 1e12:.2f} TFLOP/s, MFU {out['mfu']:.1%}, DTR/vanilla {out['dtr_step_ratio']:.4f}")
    del pair[1]
    out["sampling"] = sampling_speed(pair[0], spec, device)
    say(f"    sampling with CFG {CFG_SCALE}: DDPM-250 {out['sampling']['ddpm250_images_per_s']:.2f} img/s, "
        f"DDIM-50 {out['sampling']['ddim50_images_per_s']:.2f} img/s (batch {spec.sample_batch})")
    return out


def deepspeed_step(spec: Scale, device: torch.device, say: Callable[[str], None]) -> dict:
    """The MFU model's vanilla step through a DeepSpeed bf16 engine (+ EMA), as the training loop runs it;
    a note instead when deepspeed cannot be imported or the engine fails (optional: never a failure)."""
    try:
        import deepspeed  # noqa: F401
    except ImportError as err:
        return {"status": "skipped", "note": f"deepspeed not importable ({err}); DeepSpeed-engine step skipped"}
    from trainers.bench.cases import TrainStepCase
    from trainers.bench.steps import TrainStepRunner
    try:
        base = StepTrainer(spec.mfu_model, "none", spec, torch.device("cpu"))
        case = TrainStepCase("deepspeed_bf16", "none", model=spec.mfu_model, batch=spec.batch, shape=spec.latent,
                             num_classes=spec.num_classes, steps_per_round=spec.steps_per_round)
        runner = object.__new__(TrainStepRunner)  # TrainStepRunner's set-up with a bf16 engine
        runner._setup(case, base.cfg, base.model, spec.latent, spec.num_classes, "bf16", device, "deepspeed")
        for _ in range(spec.warmup):
            runner.unit()
        step = statistics.median(elapsed(runner.unit, device, spec.steps_per_round) for _ in range(spec.rounds))
    except Exception as err:  # noqa: BLE001 -- optional part: reported, not fatal
        return {"status": "failed", "note": f"DeepSpeed-engine step failed: {type(err).__name__}: {err}"[:500]}
    say(f"  DeepSpeed bf16 engine ({spec.mfu_model}, + EMA): step {step * 1e3:.2f} ms")
    return {"status": "ok", "model": spec.mfu_model, "step_ms": step * 1e3, "images_per_s": spec.batch / step}


def targets(result: dict, spec: Scale) -> list[dict]:
    """PASS/FAIL of every target (a NaN or missing value fails)."""
    rows = []
    mfu = result["models"].get(spec.mfu_model, {}).get("mfu", math.nan)
    rows.append({"name": f"mfu {spec.mfu_model}", "value": mfu, "target": f">= {MFU_TARGET}",
                 "pass": bool(mfu >= MFU_TARGET)})
    for name in spec.models:
        ratio = result["models"].get(name, {}).get("dtr_step_ratio", math.nan)
        rows.append({"name": f"dtr_step_ratio {name}", "value": ratio, "target": f"<= {DTR_RATIO_TARGET}",
                     "pass": bool(ratio <= DTR_RATIO_TARGET)})
    return rows


def device_info(device: torch.device) -> dict:
    info = {"type": device.type, "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(name=p.name, capability=f"{p.major}.{p.minor}", memory_gib=p.total_memory / 2 ** 30,
                    multiprocessors=p.multi_processor_count, count=torch.cuda.device_count())
    else:
        info.update(name="cpu", threads=torch.get_num_threads())
    return info


def run_check(opts: GpuCheckOptions, say: Callable[[str], None] = print) -> dict:
    """The whole check; the result dict holds every number, the settings and the targets' verdicts."""
    spec = opts.spec()
    device = torch.device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device")
    started = time.perf_counter()
    with matmul_settings() as settings:
        say(f"GPU check, scale {opts.scale}, on {device_info(device)['name']}")
        peak = peak_matmul(spec, device)
        say(f"  peak: {spec.peak_size}^2 bf16 GEMM, best of {spec.peak_tries}: {peak['flops_per_s'] / 1e12:.1f} TFLOP/s")
        models = {}
        for name in spec.models:
            models[name] = model_result(name, spec, device, peak["flops_per_s"], opts, say)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        optional = {"deepspeed": deepspeed_step(spec, device, say) if opts.engine == "deepspeed" else
                    {"status": "not requested", "note": "--engine deepspeed times a DeepSpeed bf16 engine step"}}
    result = {"suite": "gpu", "scale": opts.scale, "device": device_info(device), "settings": {
        **settings, "compile": opts.compile, "optimizer": f"torch AdamW (fused={device.type == 'cuda'})",
        "ema": False, "batch": spec.batch, "latent": list(spec.latent), "rounds": spec.rounds,
        "steps_per_round": spec.steps_per_round, "warmup_steps": spec.warmup, "dtr": DTR},
        "peak": peak, "peak_gflops_per_s": peak["flops_per_s"] / 1e9, "models": models, "optional": optional}
    result["targets"] = targets(result, spec)
    result["passed"] = all(t["pass"] for t in result["targets"])
    result["wall_s"] = time.perf_counter() - started
    return result
