"""The efficiency metrics of the speed suite: the laptop preset's training step (trainers.bench
PresetStepCase, read from the preset when the suite is built) as images/s, model FLOP/s and a
fraction of the matmul peak timed in the same interleaved rounds (MFU), and whether reduced
precision (bf16 autocast) pays on this machine.

Metrics (``<p>`` is the preset case, "laptop"; values per round, from the fastest step of the round):
  <p>_images_per_s                  micro-batch / step time                                  higher is better
  <p>_train_flops_per_image         trainers.training.efficiency.train_flops_per_image (3 forwards, a constant)
  <p>_model_flops_per_s             <p>_images_per_s x <p>_train_flops_per_image             higher is better
  <p>_model_flops_per_s_per_core    <p>_model_flops_per_s / torch threads of the bench       higher is better
  peak_matmul_flops_per_s           2 n^3 / t(n-square matmul) in the preset's precision     higher is better
  <p>_mfu                           <p>_model_flops_per_s / peak_matmul_flops_per_s          higher is better
  <p>_precision_step_ratio          t_step(reduced precision) / t_step(fp32), same rounds    gated
  step_ms_<p>, step_ms_<p>_<other>  absolute step times (<other>: fp32, or auto when the preset runs fp32)
Only the precision ratio is gated by default: the others are absolute (machine-bound), and the MFU is
a DiT step over a GEMM, two things that drift apart on a busy machine (as vanilla_step_per_calib);
--gate-absolute gates them too.  Times are on the bench's clock: with --threads > 1 use --clock wall
(the CPU clock adds up the threads' time).
"""
from __future__ import annotations

from platform.bench.gate import Stat, ratio_values
from trainers.bench import cases as C


def _fp(conditions: dict, info: dict, *cases) -> str:
    """Fingerprint of ``cases`` under ``conditions`` and the precisions they resolved to on this machine."""
    return C.fingerprint(*cases, conditions, {c.name: info.get(c.name, {}).get("precision_ran") for c in cases})


def efficiency_stats(speed_cases, times: dict[str, list[float]], info: dict[str, dict],
                     conditions: dict) -> list[Stat]:
    """The metrics above from the interleaved ``times`` (seconds per unit) and the runners' ``info``."""
    steps = [c for c in speed_cases if isinstance(c, C.PresetStepCase) and c.name in times]
    peaks = {c.preset: c for c in speed_cases if isinstance(c, C.PeakCase) and c.name in times}
    threads = conditions["threads"]
    out = [Stat(f"step_ms_{c.name}", tuple(v * 1000.0 for v in times[c.name]), "ms", False, _fp(conditions, info, c),
                f"{c.describe()} (ran {info[c.name]['precision_ran']})") for c in steps]
    for case in (c for c in steps if c.name == c.preset):   # the preset's own precision: the MFU
        got, fp = info[case.name], _fp(conditions, info, case)
        ran = got["precision_ran"]
        images = tuple(got["images_per_unit"] / t for t in times[case.name])
        flops = tuple(x * got["flops_per_image"] for x in images)
        p = case.name
        out += [Stat(f"{p}_images_per_s", images, "img/s", False, fp, f"{p} training images/s ({ran})", True),
                Stat(f"{p}_train_flops_per_image", tuple(got["flops_per_image"] for _ in images), "FLOP", False, fp,
                     f"{case.model} model FLOPs per training image (3 forward passes)"),
                Stat(f"{p}_model_flops_per_s", flops, "FLOP/s", False, fp, f"{p} model FLOP/s ({ran})", True),
                Stat(f"{p}_model_flops_per_s_per_core", tuple(f / threads for f in flops), "FLOP/s", False, fp,
                     f"{p} model FLOP/s per torch thread ({threads})", True)]
        peak = peaks.get(case.preset)
        if peak is not None:
            pk = tuple(info[peak.name]["flops_per_unit"] / t for t in times[peak.name])
            out += [Stat("peak_matmul_flops_per_s", pk, "FLOP/s", False, _fp(conditions, info, peak),
                         f"{peak.describe()}, ran {info[peak.name]['precision_ran']}", True),
                    Stat(f"{p}_mfu", ratio_values(flops, pk), "frac", False, _fp(conditions, info, case, peak),
                         f"{p} model FLOP/s / matmul peak in the same rounds; {ran}, {threads} thread(s)", True)]
        other = next((c for c in steps if c.preset == case.preset and c is not case), None)
        if other is not None:
            # reduced precision over fp32, whichever side the preset is on
            num, den = (other, case) if ran == "fp32" else (case, other)
            out.append(Stat(f"{p}_precision_step_ratio", ratio_values(times[num.name], times[den.name]), "x", True,
                            _fp(conditions, info, case, other),
                            f"{p} step time in {info[num.name]['precision_ran']} / in "
                            f"{info[den.name]['precision_ran']} (< 1: reduced precision pays)"))
    return out
