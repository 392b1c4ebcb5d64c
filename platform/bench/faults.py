"""``python -m platform.bench --suite faults``: what the faults a cluster throws cost (issue 15).

    python -m platform.bench --suite faults                      # every case (~1-1.5 h on 2 cores)
    python -m platform.bench --suite faults --cases preemption   # one case (preemption, outage, sweep, tracking)
    python -m platform.bench --suite faults --tiny               # every case at test size (minutes)

Cases (docs/benchmarks.md, "Faults"):
  preemption  SIGTERM -> checkpoint written -> exit of a training process at the laptop and paper-sim
              budgets' model sizes (platform/bench/preempt.py); target: exit within 30 s
  outage      the MLflow server stopped for 30 s in the middle of a sweep and started again: the
              timeline, and every training record logged meanwhile found in MLflow afterwards
              (platform/bench/outage.py)
  sweep       a sweep of 200 trivial trials (budget ``trivial``), 8 at once: the driver's overhead per
              trial and the Optuna journal's size (platform/bench/scale.py)
  tracking    8 and 32 writer processes logging like trials into an MLflow server backed by sqlite,
              PostgreSQL and PostgreSQL + basic-auth: request latency percentiles and errors
              (platform/bench/tracking_store.py); PostgreSQL stores are skipped with one line when the
              server binaries or psycopg2 are missing

No MLflow run, no history line (the tracking case would measure its own store): the JSON file
``runs/bench/faults-<UTC time>.json`` (or ``--json``) is the record.  Exit status: 0 every case ran
and every target passed, 1 a target failed, 2 a case could not run (skipped or crashed; one line each).
"""
from __future__ import annotations

import datetime as _dt
import os
import sys
import tempfile
import traceback

CASES = ("preemption", "outage", "sweep", "tracking")
FULL = {"presets": ("laptop", "paper-sim"), "trials": 200, "concurrency": 8, "writers": (8, 32), "steps": 100,
        "outage_s": 30.0, "outage_steps": 600}
TINY = {"presets": ("laptop", "paper-sim"), "trials": 12, "concurrency": 4, "writers": (2,), "steps": 5,
        "outage_s": 10.0, "outage_steps": 300}


def _preemption(size: dict, say) -> tuple[dict, bool]:
    from platform.bench.preempt import build_latent_cache, measure_preemption
    out, passed = {}, True
    with tempfile.TemporaryDirectory(prefix="dtr-bench-preempt-") as workdir:
        for preset in size["presets"]:
            data_root = build_latent_cache(workdir) if preset == "paper-sim" else None
            got = measure_preemption(preset, workdir, data_root)
            out[preset] = got
            passed &= got["passed"]
            written = got["signal_to_checkpoint_s"]
            say(f"  {'PASS' if got['passed'] else 'FAIL'}  {preset:<10} SIGTERM -> checkpoint of step "
                f"{got['checkpoint_step']} ({got['checkpoint_mb'] or 0:.1f} MB) "
                f"{'%.1f s' % written if written is not None else 'not written'}, -> exit "
                f"{got['signal_to_exit_s']:.1f} s (status {got['exit_status']}; target < {got['target_s']:.0f} s)")
    return out, passed


def _sweep(size: dict, num_cpus: int, say) -> dict:
    from platform.bench.scale import run_sweep
    got = run_sweep(size["trials"], size["concurrency"], num_cpus, say)
    say(f"  {got['finished_trials']}/{got['trials']} trials, {got['concurrency']} at once, "
        f"{got['trials_wall_s']:.0f} s (+{got['summary_s']:.0f} s summary): {got['slot_s_per_trial']:.1f} s "
        f"of a slot per trial (steady state {got.get('steady_slot_s_per_trial', float('nan')):.1f} s) = "
        f"{got['training_s']:.2f} s training + {got['overhead_s_per_trial']:.1f} s overhead "
        f"(trial process {got['trial_process_s']:.1f} s, scheduling {got['scheduling_s_per_trial']:.1f} s); "
        f"driver CPU {got['driver_cpu_s_per_trial']:.2f} s per trial; Optuna journal "
        f"{got['journal_bytes'] / 1024:.0f} KiB ({got['journal_bytes_per_trial']:.0f} B per trial)")
    return got


def _outage(size: dict, say) -> tuple[dict, bool]:
    from platform.bench.outage import run_outage
    got = run_outage(size["outage_s"], size["outage_steps"], stop_after=3, say=say)
    trials = got.get("trials", {})
    arrived = f"{got['catch_up_s']:.1f} s after the restart" if "catch_up_s" in got else "NOT within 600 s"
    say(f"  {'PASS' if got['passed'] else 'FAIL'}  server down {got['stopped_at']:.1f} -> {got['restarted_at']:.1f} s "
        f"of the sweep: {got['records_during_outage']} training records logged meanwhile, all in MLflow {arrived}; "
        f"sweep exit {got['sweep_exit']} at {got['sweep_s']:.0f} s, {sum(t['finished'] for t in trials.values())}/"
        f"{len(trials)} trials trained every step, {got['missing']} logged records missing from MLflow")
    return got, got["passed"]


def _tracking(size: dict, say) -> tuple[dict, list[str]]:
    from platform.bench.postgres import PostgresUnavailable
    from platform.bench.tracking_store import STORES, measure_store
    out, skipped = {}, []
    for store in STORES:
        try:
            out[store] = measure_store(store, size["writers"], size["steps"], say)
        except PostgresUnavailable as err:
            line = f"tracking {store}: skipped: PostgreSQL is not available here ({err})"
            say(f"  {line}")
            out[store] = {"skipped": str(err)}
            skipped.append(line)
    return out, skipped


def run_faults_suite(args) -> int:
    """Run the requested cases for the parsed ``args`` of cli.py; print, write the JSON, return the status."""
    cases = tuple(c.strip() for c in args.cases.split(",") if c.strip()) or CASES
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        print(f"error: unknown case(s) {unknown} of --suite faults; known: {list(CASES)}", file=sys.stderr)
        return 2
    import signal
    # SIGTERM unwinds like an error: the cases' finally blocks stop their servers and remove their temp dirs
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    from platform.bench.provenance import git_commit, host_info
    from trainers.files import atomic_write_json
    from trainers.paths import runs_dir
    size = TINY if args.scale == "tiny" else FULL
    now = _dt.datetime.now(_dt.timezone.utc)
    record = {"suite": "faults", "scale": args.scale, "time": now.isoformat(), "git_commit": git_commit(),
              "host": host_info(), "load_avg_1m_at_start": os.getloadavg()[0], "cases": {}}
    status, problems = 0, []

    def say(text: str) -> None:
        print(text, flush=True)
    for case in cases:
        say(f"[faults] {case}")
        try:
            if case == "preemption":
                record["cases"][case], passed = _preemption(size, say)
                status = max(status, 0 if passed else 1)
            elif case == "outage":
                record["cases"][case], passed = _outage(size, say)
                status = max(status, 0 if passed else 1)
            elif case == "sweep":
                record["cases"][case] = _sweep(size, os.cpu_count() or 2, say)
            else:
                record["cases"][case], skipped = _tracking(size, say)
                problems += skipped
        except Exception as err:  # noqa: BLE001 -- one line per case that could not run (exit 2, not 1)
            traceback.print_exc()
            problems.append(f"{case}: could not run: {type(err).__name__}: {str(err).splitlines()[0][:300]}")
            record["cases"][case] = {"error": problems[-1]}
    record["load_avg_1m_at_end"] = os.getloadavg()[0]
    path = args.json_out or os.path.join(runs_dir(), "bench", f"faults-{now.strftime('%Y%m%d-%H%M%S')}.json")
    atomic_write_json(path, record, indent=1)
    for line in problems:
        print(line, file=sys.stderr)
    print(f"result JSON: {path}")
    return 2 if problems else status
