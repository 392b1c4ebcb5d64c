"""Train one diffusion model with DeepSpeed: the unit every search trial runs.

    # a laptop run on Fashion-MNIST (CPU, offline)
    python -m trainers.train --preset laptop --routing dtr --beta 0.8
    # what would run, without running it
    python -m trainers.train --preset paper --routing dtr --dry-run
    # continue a run that was interrupted (only --steps may change)
    python -m trainers.train --preset laptop --routing dtr --resume runs/train/run
    # N processes on one machine, or under Ray Train: the same function (trainers.training.run.train)
    torchrun --nproc_per_node 8 -m trainers.train --preset paper

The command line is trainers/training/cli.py; the loop is trainers/training/loop.py.
"""
import sys

from trainers.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
