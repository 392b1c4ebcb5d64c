"""Shared fixtures.  The domain-feature classifier and reference statistics are cached
once per test session (or in $DTR_TEST_CACHE_DIR when set, e.g. across CI steps)."""
import os

import pytest


@pytest.fixture(scope="session")
def shared_cache_dir(tmp_path_factory):
    path = os.environ.get("DTR_TEST_CACHE_DIR") or str(tmp_path_factory.mktemp("dtr-cache"))
    os.makedirs(path, exist_ok=True)
    return path
