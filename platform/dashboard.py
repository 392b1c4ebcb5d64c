"""``python -m platform.dashboard SPACE [--budget B] [--name N | --sweep-dir D] [--port P]``: optuna-dashboard
on the sweep's Optuna study (``<sweep_dir>/optuna_journal.log``, the journal the sweep's searcher
writes), served on 127.0.0.1 only.  It reads the journal live: open it while the sweep runs to
watch trials arrive (history, intermediate FID-k values, importance, parallel coordinates).
``make dashboard SPACE=dtr_beta BUDGET=laptop`` runs it.  A sweep that does not exist (or has no
search phase yet) is one line and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from platform.sweep_paths import sweep_dir_for
from reports.optuna_views import JOURNAL

HOST = "127.0.0.1"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m platform.dashboard",
        description="Open optuna-dashboard on a sweep's Optuna journal, on http://127.0.0.1:PORT (Ctrl-C stops it).")
    parser.add_argument("space", help="the sweep's search space (as given to python -m platform.search)")
    parser.add_argument("--budget", default="laptop", help="the sweep's budget (default: laptop)")
    parser.add_argument("--name", default=None, help="the sweep's --name, if it was started with one")
    parser.add_argument("--sweep-dir", default=None, help="the sweep's directory, if it was started with --sweep-dir")
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")
    return parser


def journal_path(args: argparse.Namespace) -> str:
    """The sweep's journal; ValueError (one line) when the sweep or its journal does not exist."""
    sweep_dir = sweep_dir_for(args.space, args.budget, args.name, args.sweep_dir)
    if not os.path.isdir(sweep_dir):
        raise ValueError(f"no sweep at {sweep_dir}: start it with python -m platform.search {args.space} "
                         f"--budget {args.budget} (or give its --name / --sweep-dir)")
    path = os.path.join(sweep_dir, JOURNAL)
    if not os.path.exists(path):
        raise ValueError(f"{sweep_dir} has no Optuna journal ({JOURNAL}) yet: its search phase has not started")
    return path


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = journal_path(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        from optuna_dashboard import run_server
    except ImportError as err:
        print(f"error: optuna-dashboard is not installed ({err.name}): pip install -e '.[dev]' or make install",
              file=sys.stderr)
        return 2
    print(f"optuna-dashboard for {path} on http://{HOST}:{args.port} (Ctrl-C to stop)", flush=True)
    try:
        run_server(JournalStorage(JournalFileBackend(path)), host=HOST, port=args.port)
    except KeyboardInterrupt:
        return 0
    except OSError as err:  # the port is taken
        print(f"error: cannot serve on {HOST}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
