"""``python -m platform.search <space>``: a Ray Tune + Optuna sweep of a named search space.

    python -m platform.search dtr_beta                       # laptop budget, local Ray, offline
    python -m platform.search dtr_beta --budget paper --address auto   # on a Ray cluster
    python -m platform.search dtr_beta                       # again: resumes the same sweep
    python -m platform.search dtr_beta --dry-run             # what would run, estimated time; starts nothing

Run from the repository root (``platform`` is also a stdlib module name; see README).
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
from urllib.parse import urlparse

from search_spaces import all_spaces, get_space
from search_spaces.budgets import BUDGETS, get_budget


def build_parser() -> argparse.ArgumentParser:
    spaces = all_spaces()
    listing = "\n".join(f"  {name:<16} {space.description}" for name, space in sorted(spaces.items()))
    budgets = "\n".join(f"  {name:<16} {b.description}" for name, b in sorted(BUDGETS.items()))
    parser = argparse.ArgumentParser(
        prog="python -m platform.search",
        description="Search a named space with Ray Tune + Optuna; every trial trains with DeepSpeed, "
                    "evaluates FID and logs to MLflow. Running the same command again resumes the sweep.",
        epilog=f"search spaces:\n{listing}\n\nbudgets:\n{budgets}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("space", help="name of the search space (listed below)")
    parser.add_argument("--budget", default="laptop", help="scale of every trial (listed below)")
    parser.add_argument("--trials", type=int, default=None,
                        help="number of search trials (default: the space's); a resume may raise it to run more")
    parser.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: the budget's)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (host:port or 'auto'); default: start Ray on this machine")
    parser.add_argument("--sweep-dir", default=None, help="where the sweep lives (default runs/sweeps/<space>-<budget>)")
    parser.add_argument("--name", default=None,
                        help="name of the sweep: its directory is runs/sweeps/<name> (a new sweep beside the default)")
    parser.add_argument("--fresh", action="store_true",
                        help="start over: move an existing sweep directory aside (to <dir>.old-<time>) first")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the trials, baselines, seeds, concurrency and an estimated time; start nothing")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Optuna sampler")
    parser.add_argument("--objectives", default="",
                        help="comma-separated metrics for a multi-objective search, e.g. fid,images_per_s "
                             "(any reported metric as NAME:min or NAME:max)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a run-config field for every trial, e.g. --set steps=2000 (repeatable)")
    parser.add_argument("--num-cpus", type=int, default=None, help="logical CPUs of a local Ray (default: all)")
    return parser


def _check_reachable(address: str | None) -> None:
    """Fail fast with one line when a Ray address or MLflow server cannot be reached."""
    if address and address != "auto":
        target = urlparse(address if "://" in address else f"ray://{address}")
        _connect(target.hostname, target.port or 6379, f"Ray cluster at {address}")
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith(("http://", "https://")):
        target = urlparse(uri)
        _connect(target.hostname, target.port or (443 if target.scheme == "https" else 80),
                 f"MLflow server at {uri}")


def _connect(host: str | None, port: int, what: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as err:
        raise ConnectionError(f"cannot reach the {what}: {err}") from None


def parse_overrides(items: list[str]) -> dict:
    """``["steps=2000", "lr=1e-4"]`` -> typed RunConfig overrides (validated against the dataclass)."""
    import dataclasses
    import json

    from trainers.config import RunConfig
    types = {f.name: str(f.type) for f in dataclasses.fields(RunConfig)}
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in types:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD a run-config field")
        kind = types[key]
        try:
            out[key] = (json.loads(text) if kind in ("dict", "bool") else int(text) if kind == "int"
                        else float(text) if kind == "float" else text)
        except ValueError:
            raise ValueError(f"--set {item!r}: {text!r} is not a valid {kind}") from None
    return out


def _move_aside(sweep_dir: str) -> None:
    """``--fresh``: rename an existing sweep directory (never delete it) and say where it went."""
    import time

    from platform.sweep_lock import ensure_unlocked
    if os.path.exists(sweep_dir):
        ensure_unlocked(sweep_dir)  # never move a running sweep's directory
        target = f"{os.path.abspath(sweep_dir)}.old-{time.strftime('%Y%m%d-%H%M%S')}"
        os.rename(sweep_dir, target)
        print(f"--fresh: moved the existing sweep to {target}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        space = get_space(args.space)
        get_budget(args.budget)
        space.validate()
        if args.trials is not None and args.trials < 1:
            raise ValueError(f"--trials must be >= 1, got {args.trials}")
        if args.name and args.sweep_dir:
            raise ValueError("give --name or --sweep-dir, not both")
        overrides = parse_overrides(args.set)
        from search_spaces.resolve import check_overrides
        check_overrides(space, get_budget(args.budget), overrides)
        from platform.sweep import SweepOptions, default_sweep_dir, dry_run_text, run_sweep, sweep_settings
        from trainers.paths import runs_dir
        sweep_dir = args.sweep_dir or (os.path.join(runs_dir(), "sweeps", args.name) if args.name else None)
        opts = SweepOptions(space=args.space, budget=args.budget, trials=args.trials,
                            max_concurrent=args.max_concurrent, address=args.address, sweep_dir=sweep_dir,
                            seed=args.seed, num_cpus=args.num_cpus, overrides=tuple(overrides.items()),
                            objectives=tuple(m for m in args.objectives.split(",") if m))
        sweep_settings(opts)  # raises on an unknown objective
        if args.dry_run:
            print(dry_run_text(opts))
            return 0
        _check_reachable(args.address)
    except (ValueError, ConnectionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        if args.fresh:
            _move_aside(opts.sweep_dir or default_sweep_dir(args.space, args.budget))
        result = run_sweep(opts)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"sweep directory: {result['sweep_dir']}")
    return 1 if result["errors"] and result["errors"] == result["table"].height else 0


if __name__ == "__main__":
    sys.exit(main())
