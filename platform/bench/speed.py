"""The speed suite: build a runner per case (trainers.bench.measure), time them interleaved, and
turn the per-round times into metrics.

Metrics (all lower-is-better; ``<case>`` is dtr, rtr, switch):
  <case>_step_ratio             t_step(<case>) / t_step(vanilla), per round          gated
  vanilla_step_per_calib        t_step(vanilla) / t(calib GEMMs), per round          gated with --gate-absolute
  sample_image_per_vanilla_step t(sample one image) / t_step(vanilla), per round     gated
  fid_per_vanilla_step          t(FID of 2k samples) / t_step(vanilla), per round    gated
  calib_ms, step_ms_<case|vanilla>, sample_ms_per_image, fid_ms   absolute, reported (gated
                                with --gate-absolute: only meaningful on the baseline's machine)
  the laptop preset's step, MFU and precision ratio: efficiency.py; PCGrad / Nash-MTL vs vanilla: mtl.py;
  fresh processes (start-up, DeepSpeed init): processes.py
Ratios to quantities timed in the same round are what make the gate usable on a shared,
noisy machine: a slower (or busier) box shifts the absolute times, not the ratios.
"""
from __future__ import annotations

import time

from platform.bench.efficiency import efficiency_stats
from platform.bench.gate import Stat, ratio_values
from platform.bench.mtl import mtl_stats
from platform.bench.options import Plan
from trainers.bench import cases as C


def interleaved_cases(speed_cases) -> list:
    """The speed cases timed round-robin (all but the fresh-process ones)."""
    return [c for c in speed_cases if not isinstance(c, C.PROCESS_CASES)]


def measure_speed(plan: Plan, say):
    """Build every interleaved case's runner, then time them all round-robin (:func:`interleave`)."""
    import torch

    from trainers.bench.measure import build_runner, interleave
    opts, rounds, warmup = plan.opts, plan.rounds, plan.warmup
    device = torch.device(opts.device)
    runners = []
    for case in interleaved_cases(plan.speed_cases):
        t0 = time.perf_counter()
        runners.append(build_runner(case, device, opts.engine))
        say(f"  ready {case.name:<8} {case.describe()}  ({time.perf_counter() - t0:.1f}s)")
    say(f"  timing: {warmup} warm-up pass(es), then {rounds} interleaved rounds, {opts.clock} clock, "
        "fastest unit of each case per round")

    def on_round(r, got):
        say(f"  round {r + 1}/{rounds}: " + "  ".join(f"{k} {v * 1000:.0f}ms" for k, v in got.items()))
    timings = interleave(runners, rounds, warmup, opts.clock, device, on_round)
    say(f"  machine contention during timing: wall/cpu = {timings.contention:.2f} (about 1 when the cores are ours)")
    return timings


def _ms(values) -> tuple[float, ...]:
    return tuple(v * 1000.0 for v in values)


def speed_stats(speed_cases, times: dict[str, list[float]], conditions: dict,
                info: dict[str, dict] | None = None) -> list[Stat]:
    """Metrics of the interleaved timings ``times`` (seconds per unit, one value per round; ``info``:
    the runners' constants, see trainers.bench.measure.Timings)."""
    speed_cases = [c for c in speed_cases if c.name in times]
    by_name = {c.name: c for c in speed_cases}
    fp = {c.name: C.fingerprint(c, conditions) for c in speed_cases}
    ratios, absolute = [], []
    calib, vanilla = times.get("calib"), times.get("vanilla")

    def per_vanilla(name: str, case, t, what: str) -> None:
        if vanilla:
            ratios.append(Stat(name, ratio_values(t, vanilla), "x", True,
                               C.fingerprint(case, by_name["vanilla"], conditions), what))

    for case in speed_cases:
        t = times[case.name]
        if isinstance(case, C.CalibCase):
            absolute.append(Stat("calib_ms", _ms(t), "ms", False, fp[case.name], case.describe()))
        elif isinstance(case, C.TrainStepCase):
            absolute.append(Stat(f"step_ms_{case.name}", _ms(t), "ms", False, fp[case.name], case.describe()))
            if case.name == "vanilla" and calib:
                # a DiT step over a GEMM chain: the two react differently to the state of the
                # machine (measured: calib +38 % between back-to-back runs, DiT step +8 %), so
                # like the absolute times it is gated only with --gate-absolute
                ratios.append(Stat("vanilla_step_per_calib", ratio_values(t, calib), "x", False,
                                   C.fingerprint(case, by_name["calib"], conditions),
                                   "vanilla step time / calibration GEMM time"))
            elif case.name != "vanilla":
                per_vanilla(f"{case.name}_step_ratio", case, t,
                            f"{C.ROUTED.get(case.name, case.name)} step time / vanilla step time")
        elif isinstance(case, C.SampleCase):
            absolute.append(Stat("sample_ms_per_image", _ms(t), "ms", False, fp[case.name], case.describe()))
            per_vanilla("sample_image_per_vanilla_step", case, t, "sampling time per image / vanilla step time")
        elif isinstance(case, C.FidCase):
            absolute.append(Stat("fid_ms", _ms(t), "ms", False, fp[case.name], case.describe()))
            per_vanilla("fid_per_vanilla_step", case, t, "FID evaluation time / vanilla step time")
    return ratios + absolute + efficiency_stats(speed_cases, times, info or {}, conditions) + mtl_stats(
        speed_cases, times, conditions)
