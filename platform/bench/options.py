"""What one bench invocation is asked to do (:class:`BenchOptions`, filled by cli.py) and what
that resolves to (:func:`plan`: the suite's cases, rounds, warm-up, clock and the measuring
conditions that are part of every case's fingerprint)."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

from trainers.bench import cases as C

DEFAULT_BASELINE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "baseline.json")
EXPERIMENT = "benchmarks"
SUITES = ("speed", "quality", "all")
ENGINE_TEXT = {"deepspeed": "DeepSpeed engine (ZeRO-0, fp32, torch AdamW client optimizer) + EMA, as "
                            "trainers/training/loop.py",
               "torch": "NO DeepSpeed: the same DiffusionObjective + torch AdamW + EMA (engine=torch)"}


@dataclass
class BenchOptions:
    suite: str = "speed"
    scale: str = "full"
    rounds: int | None = None        # None: the suite's default
    warmup: int | None = None
    cases: tuple[str, ...] = ()      # () = all cases of the suite
    seeds: tuple[int, ...] = ()      # () = the quality cases' own seeds
    threads: int = 1
    engine: str = "deepspeed"
    device: str = "cpu"
    clock: str | None = None         # None: "cpu" (process CPU time) on CPU, "wall" on CUDA
    baseline: str = DEFAULT_BASELINE
    update_baseline: bool = False
    gate_absolute: bool = False
    mlflow: bool = True
    history: str | None = None
    json_out: str | None = None


@dataclass(frozen=True)
class Plan:
    """The resolved invocation: ``opts`` with its clock filled in, and what will be measured."""

    opts: BenchOptions
    rounds: int
    warmup: int
    speed_cases: tuple
    quality_cases: tuple

    @property
    def conditions(self) -> dict:
        """Measuring conditions of the speed cases (part of their fingerprints)."""
        o = self.opts
        return {"threads": o.threads, "engine": o.engine, "device": o.device, "clock": o.clock}


def select_speed_cases(all_cases, names: tuple[str, ...]) -> list:
    """The requested speed cases (default: all but the optional ones), plus the cases each is
    measured with (trainers.bench.cases.needs: calib and vanilla for the step, sampling and FID
    ratios; the other precision and the peak for the laptop step; nothing for fresh processes)."""
    if not names:
        return [c for c in all_cases if not C.optional(c)]
    wanted = set(names)
    for case in all_cases:
        if case.name in names:
            wanted |= set(C.needs(case))
    return [c for c in all_cases if c.name in wanted]


def plan(opts: BenchOptions) -> Plan:
    """Check ``opts`` (ValueError on nonsense: exit status 2) and resolve them against the suite."""
    if opts.suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, got {opts.suite!r}")
    if opts.threads < 1:
        raise ValueError("threads must be >= 1")
    s = C.suite(opts.scale)
    rounds = opts.rounds if opts.rounds is not None else s.rounds
    warmup = opts.warmup if opts.warmup is not None else s.warmup
    if rounds < 2:
        raise ValueError("rounds must be >= 2 (a noise band needs repeats)")
    known = {c.name for c in s.speed} | {c.name for c in s.quality}
    unknown = set(opts.cases) - known
    if unknown:
        raise ValueError(f"unknown case(s) {sorted(unknown)}; known: {sorted(known)}")
    speed = select_speed_cases(s.speed, opts.cases) if opts.suite in ("speed", "all") else []
    quality = [c for c in s.quality if not opts.cases or c.name in opts.cases or c.name == "vanilla"] \
        if opts.suite in ("quality", "all") else []
    clock = opts.clock or ("cpu" if opts.device == "cpu" else "wall")
    return Plan(replace(opts, clock=clock), rounds, warmup, tuple(speed), tuple(quality))
