"""The cost of ANT's gradient combination (trainers.bench MtlStepCase): the laptop preset's training
step with PCGrad / Nash-MTL over 8 timestep clusters against the same step with vanilla weighting,
timed in the same interleaved rounds.

Metrics (values per round, from the fastest step of the round):
  pcgrad_step_ratio, nash_mtl_step_ratio   t_step(combination) / t_step(mtl_vanilla)     gated
  step_ms_mtl_vanilla, step_ms_pcgrad, step_ms_nash_mtl                          absolute, reported
"""
from __future__ import annotations

from platform.bench.gate import Stat, ratio_values
from trainers.bench import cases as C

LABELS = {"pcgrad": "PCGrad", "nash_mtl": "Nash-MTL"}


def mtl_stats(speed_cases, times: dict[str, list[float]], conditions: dict) -> list[Stat]:
    """The metrics above from the interleaved ``times`` (seconds per unit)."""
    steps = {c.name: c for c in speed_cases if isinstance(c, C.MtlStepCase) and c.name in times}
    out = [Stat(f"step_ms_{c.name}", tuple(v * 1000.0 for v in times[c.name]), "ms", False,
                C.fingerprint(c, conditions), c.describe()) for c in steps.values()]
    vanilla = next((c for c in steps.values() if c.weighting == "vanilla"), None)
    if vanilla is None:
        return out
    for case in (c for c in steps.values() if c is not vanilla):
        out.append(Stat(f"{case.name}_step_ratio", ratio_values(times[case.name], times[vanilla.name]), "x", True,
                        C.fingerprint(case, vanilla, conditions),
                        f"{LABELS.get(case.name, case.name)} step time / vanilla step time ({case.preset} preset, "
                        f"{case.uw_clusters} clusters)"))
    return out


def mtl_lines(by_name: dict) -> list[str]:
    """One line with the combinations' step-time ratios (none when not measured)."""
    found = [(label, by_name[f"{name}_step_ratio"]) for name, label in LABELS.items()
             if f"{name}_step_ratio" in by_name]
    if not found:
        return []
    return ["", "ANT gradient combination vs vanilla weighting, laptop preset step (same rounds): " + ", ".join(
        f"{label} x{st.mean:.2f} (± {st.band:.2f})" for label, st in found)]
