"""What the sweep tests share: the environment of a driver subprocess and its command line."""
import os
import sys

from train_support import DIST_ENV

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def search_env(tmp_path, cache_dir):
    # without the torch.distributed variables an in-process training run of another test may have
    # left behind: a child would try to rendezvous on that test's (still listening) port
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and k not in DIST_ENV}
    env.update(DTR_RUNS_DIR=str(tmp_path / "runs"), DTR_CACHE_DIR=str(cache_dir),
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", RAY_DEDUP_LOGS="0",
               DS_ACCELERATOR="cpu", PYTHONUNBUFFERED="1")
    return env


def search_cmd(*args):
    return [sys.executable, "-m", "platform.search", "smoke", "--budget", "smoke", *args]
