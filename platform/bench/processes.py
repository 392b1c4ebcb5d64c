"""The fresh-process cases of the speed suite: start-up of a training process and DeepSpeed's
import + process-group init, launched one after the other (trainers/bench/startup.py says exactly
what is timed and how), before the interleaved cases.

Metrics (wall seconds per launch; absolute: reported and logged, gated only with --gate-absolute):
  startup_first_step_s   launch of ``python -m trainers.train --preset laptop --steps 1 ...`` -> its
                         first loss record in metrics.jsonl (the file's mtime)
  startup_process_s      launch -> exit of that process (after step 1 it writes its checkpoint)
  dsinit_s               ``import deepspeed`` (with torch) + trainers' init_deepspeed_distributed,
                         measured inside a fresh process with an empty TORCH_EXTENSIONS_DIR
  dsinit_jit_s           the same with deepspeed.init_distributed as shipped: on CPU it JIT-builds
                         its shm op (the optional case dsinit_jit, ~1.5 min on 2 cores)
The printed summary gives the median and the range of the launches as well.
"""
from __future__ import annotations

import statistics

from platform.bench.gate import Stat
from platform.bench.options import Plan
from trainers.bench import cases as C


def _summary(values) -> str:
    return (f"median {statistics.median(values):.2f}s" +
            (f" (range {min(values):.2f}-{max(values):.2f}s, n={len(values)})" if len(values) > 1 else " (n=1)"))


def measure_processes(plan: Plan, say) -> list[Stat]:
    """Launch every fresh-process case of ``plan``; its metrics (empty when none is selected)."""
    from trainers.bench.startup import run_launches
    opts, stats = plan.opts, []
    conditions = {"threads": opts.threads, "device": opts.device}
    for case in (c for c in plan.speed_cases if isinstance(c, C.PROCESS_CASES)):
        say(f"  launch  {case.name:<8} {case.describe()}")

        def on_launch(i, got, case=case):
            say(f"    launch {i + 1}/{case.launches}: " + "  ".join(f"{k} {v:.2f}s" for k, v in got.items()))
        runs = run_launches(case, opts.threads, opts.device, on_launch)
        fp = C.fingerprint(case, conditions)
        if isinstance(case, C.StartupCase):
            first, total = [r["first_step_s"] for r in runs], [r["process_s"] for r in runs]
            stats += [Stat("startup_first_step_s", tuple(first), "s", False, fp,
                           f"fresh `python -m trainers.train --preset {case.preset} --steps 1`: launch -> first step"),
                      Stat("startup_process_s", tuple(total), "s", False, fp, "the same process: launch -> exit")]
            say(f"  start-up of a training process: first step {_summary(first)}; whole process {_summary(total)}")
        else:
            values = [r["dsinit_s"] for r in runs]
            how = ("trainers' init_deepspeed_distributed" if case.declared_ops
                   else "deepspeed.init_distributed as shipped")
            stats.append(Stat(f"{case.name}_s", tuple(values), "s", False, fp,
                              f"fresh process: import deepspeed + {how}"))
            say(f"  import deepspeed + {how}: {_summary(values)}")
    return stats
