"""Shared fixtures.  ``train_env``: a runs dir and MLflow sqlite store in a temp dir for the
trainer tests.  The domain-feature classifier and reference statistics are cached
once per test session (or in $DTR_TEST_CACHE_DIR when set, e.g. across CI steps)."""
import os
import random

import numpy as np
import pytest
import torch
from train_support import DIST_ENV

# The modules that start Ray clusters: under xdist they share one worker (fixed ports, and
# `ray stop --force` stops every Ray on the machine) and run first, being the longest part (~8 of
# the suite's minutes on 2 cores), so the other worker takes everything else meanwhile.
RAY_MODULES = ("test_search.py", "test_paper_sim.py")


def _scope(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return "ray" if os.path.basename(module) in RAY_MODULES else module


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: _scope(item.nodeid) != "ray")  # stable: the order within each part is kept


def pytest_xdist_make_scheduler(config, log):
    """``make test`` runs ``pytest -n 2``: whole modules go to one worker (their module-scoped
    fixtures, a trained run or a bench, are built once) and the Ray modules together."""
    from xdist.scheduler import LoadScopeScheduling

    class ModulesAndRayTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)
    return ModulesAndRayTogether(config, log)


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
