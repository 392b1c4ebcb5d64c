"""Shared fixtures.  ``train_env``: a runs dir and MLflow sqlite store in a temp dir for the
trainer tests.  The domain-feature classifier and reference statistics are cached
once per test session (or in $DTR_TEST_CACHE_DIR when set, e.g. across CI steps)."""
import os
import random

import numpy as np
import pytest
import torch
from train_support import DIST_ENV


@pytest.fixture(scope="session")
def shared_cache_dir(tmp_path_factory):
    path = os.environ.get("DTR_TEST_CACHE_DIR") or str(tmp_path_factory.mktemp("dtr-cache"))
    os.makedirs(path, exist_ok=True)
    return path


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP contention on a loaded 2-core machine
    (2 threads were measured ~30x slower for DiT-T forwards there).  Training runs set their
    own thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def train_env(tmp_path_factory, shared_cache_dir):
    """Runs dir + MLflow sqlite store in a temp dir, the session's shared cache (domain classifier,
    reference statistics); restores global torch/RNG state afterwards."""
    root = tmp_path_factory.mktemp("train")
    db = root / "mlflow.db"
    saved = (torch.get_num_threads(), torch.get_rng_state(), random.getstate(), np.random.get_state())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DTR_RUNS_DIR", str(root / "runs"))
        mp.setenv("DTR_CACHE_DIR", shared_cache_dir)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")  # 4 slashes: db is absolute
        mp.setenv("DS_ACCELERATOR", "cpu")
        for name in DIST_ENV:
            mp.delenv(name, raising=False)  # what train() sets here is removed again afterwards
        yield root
    torch.set_num_threads(saved[0])
    torch.set_rng_state(saved[1])
    random.setstate(saved[2])
    np.random.set_state(saved[3])
