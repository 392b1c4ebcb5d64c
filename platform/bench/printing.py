"""What a bench invocation prints after measuring: the table of every metric against its baseline
(mean ± noise band, change, how far it was allowed to move, status), the step-time overheads,
the laptop step's efficiency (MFU, reduced vs fp32 precision), the routing-cost claim and the
one-line RESULT."""
from __future__ import annotations

import math
import statistics

from platform.bench.gate import CLAIM_LIMIT, FASTER, REGRESSION
from platform.bench.judge import BenchResult
from platform.bench.mtl import mtl_lines
from platform.bench.options import BenchOptions
from trainers.bench import cases as C


def _fmt(value: float, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "ms":
        return f"{value:.1f}" if value < 1000 else f"{value:.0f}"
    if unit == "FID":
        return f"{value:.2f}"
    if unit in ("FLOP/s", "FLOP"):
        return f"{value / 1e9:.2f}G"
    if unit == "s":
        return f"{value:.2f}"
    if unit == "img/s":
        return f"{value:.1f}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _pm(mean: float, band: float, unit: str) -> str:
    return f"{_fmt(mean, unit)} ± {_fmt(band, unit)}" if math.isfinite(band) else _fmt(mean, unit)


def format_table(result: BenchResult) -> str:
    head = ("metric", "unit", "this run (mean ± band)", "n", "baseline (mean ± band)", "change", "allowed", "status")
    rows = []
    for st, v in zip(result.stats, result.verdicts):
        change = f"{v.rel_change:+.1%}" if math.isfinite(v.rel_change) else "-"
        sign = "-" if st.higher_is_better else "+"
        allowed = f"{sign}{_fmt(v.allowed, st.unit)}" if math.isfinite(v.allowed) else "-"
        rows.append((st.name, st.unit, _pm(v.mean, v.band, st.unit), str(st.n), _pm(v.base_mean, v.base_band, st.unit),
                     change, allowed, v.status + (f" ({v.note})" if v.note and v.status != "ok" else "")))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in [head, *rows]]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def print_report(result: BenchResult, opts: BenchOptions, say, wall: float) -> None:
    say()
    say(format_table(result))
    say("  band = t-quantile(0.99865) x standard error of the rounds/seeds; 'allowed' = how far the mean may "
        "rise above the baseline (fall below it: img/s, FLOP/s, MFU) (Welch band of both);")
    if any(st.unit == "ms" for st in result.stats):
        say(f"  ms = {opts.clock}-clock time per unit, fastest of each round; absolute times ('info') are reported, "
            + ("and gated (--gate-absolute)" if opts.gate_absolute else "not gated; ratios are gated"))
    by_name = {st.name: st for st in result.stats}
    step_ratios = [st for st in result.stats if st.name.endswith("_step_ratio")
                   and st.name[:-len("_step_ratio")] in C.ROUTED]
    if step_ratios:
        say()
        say("step-time overhead vs vanilla (same rounds): " + ", ".join(
            f"{C.ROUTED.get(st.name[:-len('_step_ratio')], st.name)} {st.mean - 1:+.2%} (± {st.band:.2%})"
            for st in step_ratios))
    for line in efficiency_lines(by_name) + mtl_lines(by_name):
        say(line)
    if result.claims:
        say(f"claim: routing (DTR, R-TR) adds <= {CLAIM_LIMIT - 1:.0%} step time at DiT-S/2 on CPU "
            "(paper App. E: DiT-S 8.19 -> 8.14 it/s); a FAIL counts as a regression only beyond the noise band")
        for c in result.claims:
            label = C.ROUTED.get(c.name[:-len("_step_ratio")], c.name)
            say(f"  {label:<5} ratio {_pm(c.mean, c.band, 'x')} ({c.mean - 1:+.2%})  {c.status}"
                + (f": {c.note}" if c.note else ""))
    regressed = [v for v in result.verdicts if v.status == REGRESSION]
    faster = [v for v in result.verdicts if v.status == FASTER]
    say()
    if faster:
        say("better than baseline (consider --update-baseline): " + ", ".join(v.name for v in faster))
    if result.exit_code:
        what = [f"{v.name} {_fmt(v.mean, by_name[v.name].unit)} vs baseline {_fmt(v.base_mean, by_name[v.name].unit)} "
                f"(allowed +{_fmt(v.allowed, by_name[v.name].unit)})" for v in regressed]
        what += [f"claim {c.name} FAIL" for c in result.claims if c.failed]
        code = "exit 0 (--update-baseline)" if opts.update_baseline else "exit 1"
        say(f"RESULT: REGRESSION -> {code}: " + "; ".join(what))
    else:
        say("RESULT: OK (no regression beyond the noise bands) -> exit 0")
    say(f"bench wall time: {wall:.0f}s")


def efficiency_lines(by_name: dict) -> list[str]:
    """The laptop step's efficiency and the start-up in one or two lines (none when not measured)."""
    lines = []
    for mfu in (st for name, st in by_name.items() if name.endswith("_mfu")):
        p = mfu.name[:-len("_mfu")]
        flops, core = by_name[f"{p}_model_flops_per_s"], by_name[f"{p}_model_flops_per_s_per_core"]
        peak, images = by_name["peak_matmul_flops_per_s"], by_name[f"{p}_images_per_s"]
        lines.append(f"{p} step ({mfu.description.rpartition('; ')[2]}): {images.mean:.1f} img/s = "
                     f"{flops.mean / 1e9:.2f} GFLOP/s ({core.mean / 1e9:.2f} per core) of a {peak.mean / 1e9:.2f} "
                     f"GFLOP/s matmul peak: MFU {mfu.mean:.1%} (± {mfu.band:.1%})")
    for ratio in (st for name, st in by_name.items() if name.endswith("_precision_step_ratio")):
        lines.append(f"  {ratio.description}: {_pm(ratio.mean, ratio.band, 'x')}")
    if "startup_first_step_s" in by_name:
        first, total = by_name["startup_first_step_s"], by_name["startup_process_s"]
        lines.append(f"start-up of a fresh training process: first step after {statistics.median(first.values):.2f}s "
                     f"(median of {first.n}), process {statistics.median(total.values):.2f}s")
    return ([""] if lines else []) + lines
