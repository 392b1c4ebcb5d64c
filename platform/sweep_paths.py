"""Where a sweep lives, without importing the sweep driver (torch, Ray): ``runs/sweeps/<space>-<budget>``
by default, ``runs/sweeps/<name>`` for ``--name``, or an explicit ``--sweep-dir``."""
from __future__ import annotations

import os

from trainers.paths import runs_dir


def default_sweep_dir(space: str, budget: str) -> str:
    return os.path.join(runs_dir(), "sweeps", f"{space}-{budget}")


def sweep_dir_for(space: str, budget: str, name: str | None = None, sweep_dir: str | None = None) -> str:
    """The directory of the sweep that ``python -m platform.search SPACE --budget BUDGET [--name NAME |
    --sweep-dir DIR]`` runs."""
    if sweep_dir:
        return os.path.abspath(sweep_dir)
    return os.path.abspath(os.path.join(runs_dir(), "sweeps", name) if name else default_sweep_dir(space, budget))
