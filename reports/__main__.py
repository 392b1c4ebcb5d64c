"""python -m reports <sweep_dir | space-budget> [--no-mlflow]: write a sweep's HTML + Markdown report."""
from __future__ import annotations

import argparse
import os
import sys

SWEEP_MARKERS = ("trials", "trials.csv", "mlflow_parent_run_id", "baselines", "search")


def is_sweep_dir(path: str) -> bool:
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, m)) for m in SWEEP_MARKERS)


def resolve_sweep_dir(target: str) -> str | None:
    """A sweep directory path, or a bare ``<space>-<budget>`` name under ``<runs_dir>/sweeps``."""
    from trainers.paths import runs_dir
    if is_sweep_dir(target):
        return os.path.abspath(target)
    if os.sep not in target and "/" not in target:
        path = os.path.join(runs_dir(), "sweeps", target)
        if is_sweep_dir(path):
            return path
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reports", description=__doc__)
    p.add_argument("sweep", help="sweep directory, or a <space>-<budget> name under <runs_dir>/sweeps")
    p.add_argument("--no-mlflow", action="store_true", help="neither read trial records from MLflow nor log "
                   "the report to the sweep's parent run")
    args = p.parse_args(argv)
    sweep_dir = resolve_sweep_dir(args.sweep)
    if sweep_dir is None:
        print(f"error: no sweep directory {args.sweep!r} (give a path, or a <space>-<budget> name under "
              "<runs_dir>/sweeps)", file=sys.stderr)
        return 2
    from reports import build_report
    paths = build_report(sweep_dir, log_to_mlflow=not args.no_mlflow)
    print(f"wrote {paths['html']}")
    print(f"wrote {paths['markdown']} (+ {len(paths['figures'])} figures in {os.path.dirname(paths['markdown'])}"
          f"/report_files)")
    if not args.no_mlflow:
        print("logged to the sweep's MLflow parent run" if paths["mlflow_logged"]
              else "not logged to MLflow (no parent run, or the store is unreachable)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
