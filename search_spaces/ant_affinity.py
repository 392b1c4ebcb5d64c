"""ANT-UW's clustering cost: SNR-, timestep- or task-affinity-based intervals, with DTR.

The affinity option needs a measured task-affinity matrix.  The space's base names the file at
its conventional place, ``<runs>/affinity/affinity.npy`` (``$DTR_RUNS_DIR`` or ``runs/``), which
``python -m platform.affinity --run-dir <a finished run of the same budget> --bins 50 --out
runs/affinity/affinity.npy`` writes; ``--set uw_affinity_file=PATH`` points a sweep at another one.
The file is checked when a trial with the affinity option builds its config: without it that trial
fails with one line naming the command above (the snr and timestep trials run regardless).
"""
import os

from search_spaces.base import Choice, SearchSpace
from trainers.paths import runs_dir

DEFAULT_AFFINITY_FILE = os.path.join(runs_dir(), "affinity", "affinity.npy")

SPACE = SearchSpace(
    name="ant_affinity",
    description="ANT-UW (K = 8) clustered by SNR / timestep / measured task affinity "
                "(python -m platform.affinity), with DTR",
    params={"uw_cluster_method": Choice(("snr", "timestep", "affinity"))},
    base={"weighting": "ant_uw", "routing": "dtr", "beta": 0.8, "alpha": 4.0, "uw_clusters": 8,
          "uw_affinity_file": DEFAULT_AFFINITY_FILE},
    baselines={"vanilla": {"weighting": "vanilla", "routing": "none"},
               "DTR": {"weighting": "vanilla", "routing": "dtr"}},
    num_trials=6,
)
