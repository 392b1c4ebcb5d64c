"""``python -m platform.search <space>``: a Ray Tune + Optuna sweep of a named search space.

Run from the repository root (``platform`` is also a stdlib module name; see README).
"""
from __future__ import annotations

import argparse
import sys

from search_spaces import all_spaces

BUDGETS = ("smoke", "laptop", "paper")


def build_parser() -> argparse.ArgumentParser:
    spaces = all_spaces()
    listing = "\n".join(f"  {name:<16} {space.description}" for name, space in sorted(spaces.items()))
    parser = argparse.ArgumentParser(
        prog="python -m platform.search",
        description="Search a named space with Ray Tune + Optuna; every trial trains with DeepSpeed, "
                    "evaluates FID and logs to MLflow.",
        epilog=f"search spaces:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("space", help="name of the search space (listed below)")
    parser.add_argument("--budget", default="laptop", help=f"scale of every trial: one of {', '.join(BUDGETS)}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(f"the sweep runner is not wired yet (space={args.space}, budget={args.budget})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
