"""Shared fixtures.  The domain-feature classifier and reference statistics are cached
once per test session (or in $DTR_TEST_CACHE_DIR when set, e.g. across CI steps)."""
import os

import pytest


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
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
