"""The quality suite: a short training run (trainers.training.run.train) per case and seed, and
its final FID-k as metrics.

Metrics (lower-is-better, all gated):
  fid_k_vanilla, fid_k_dtr      FID-k after a short training run, per seed
  dtr_fid_k_ratio               FID-k(DTR) / FID-k(vanilla), paired by seed
"""
from __future__ import annotations

import os
import time

from platform.bench.gate import Stat, ratio_values
from platform.bench.options import EXPERIMENT, BenchOptions
from trainers.bench import cases as C


def quality_config(case, seed: int, **fields):
    """The RunConfig one quality run trains (the case's preset, its overrides, routing, seed)."""
    from trainers.presets import preset_config
    return preset_config(case.preset, **case.overrides, routing=case.routing, seed=seed, **fields)


def _quality_fingerprint(case, seeds, conditions: dict) -> str:
    """Hash of the resolved config (so a changed preset is a changed case), seeds and conditions."""
    resolved = {k: v for k, v in quality_config(case, 0).to_dict().items()
                if k not in ("seed", "run_name", "run_dir", "progress", "mlflow_experiment")}
    return C.fingerprint(resolved, list(seeds), conditions)


def quality_stats(quality_cases, fids: dict[str, dict[int, float]], conditions: dict) -> list[Stat]:
    """``fids[case][seed]`` -> FID-k per case, and DTR/vanilla paired by seed."""
    out = []
    by_name = {c.name: c for c in quality_cases}
    for case in quality_cases:
        seeds = sorted(fids.get(case.name, {}))
        out.append(Stat(f"fid_k_{case.name}", tuple(fids[case.name][s] for s in seeds), "FID", True,
                        _quality_fingerprint(case, seeds, conditions), case.describe()))
    if "dtr" in fids and "vanilla" in fids:
        seeds = sorted(set(fids["dtr"]) & set(fids["vanilla"]))
        out.append(Stat("dtr_fid_k_ratio", ratio_values([fids["dtr"][s] for s in seeds],
                                                        [fids["vanilla"][s] for s in seeds]), "x", True,
                        C.fingerprint(_quality_fingerprint(by_name["dtr"], seeds, conditions),
                                      _quality_fingerprint(by_name["vanilla"], seeds, conditions)),
                        "FID-k(DTR) / FID-k(vanilla), paired by seed"))
    return out


def measure_quality(quality_cases, opts: BenchOptions, stamp: str, parent_run_id: str | None, say) -> dict:
    """Train every case for every seed (seed-major, so a drifting machine hits both alike); the runs
    are MLflow children of the invocation's run ``parent_run_id``."""
    from trainers.paths import runs_dir
    from trainers.training.run import train
    fids: dict[str, dict[int, float]] = {c.name: {} for c in quality_cases}
    seeds = sorted({s for c in quality_cases for s in (opts.seeds or c.seeds)})
    for seed in seeds:
        for case in quality_cases:
            if seed not in (opts.seeds or case.seeds):
                continue
            name = f"bench-{case.name}-s{seed}"
            cfg = quality_config(case, seed, run_name=name, mlflow_experiment=EXPERIMENT,
                                 run_dir=os.path.join(runs_dir(), "bench", "quality", stamp, f"{case.name}-s{seed}"))
            t0 = time.perf_counter()
            final = train(cfg, parent_run_id=parent_run_id, mlflow_enabled=opts.mlflow, threads=opts.threads)
            fids[case.name][seed] = float(final["fid"])
            say(f"  {name}: FID-{cfg.final_eval_samples} ({final.get('feature_set')}) {final['fid']:.3f} "
                f"in {time.perf_counter() - t0:.0f}s")
    return fids
