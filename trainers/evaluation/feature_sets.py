"""Feature sets by name ("domain", "domain-<dataset>", "inception", "inception-clean-fid",
"inception-offline", "inception-random"), loaded once per process."""
from __future__ import annotations

import os

import torch

from trainers.evaluation.domain_classifier import domain_feature_set
from trainers.evaluation.features import FeatureSet
from trainers.evaluation.inception import inception_extractor
from trainers.paths import cache_dir as default_cache_dir

_CACHE: dict = {}


def get_feature_set(name, dataset: str | None = None, device=None, data_root: str | None = None,
                    cache_dir: str | None = None) -> FeatureSet:
    """Resolve ``name`` ("domain", "domain-<dataset>", "inception", "inception-clean-fid",
    "inception-offline", "inception-random", or a FeatureSet) to a loaded extractor, memoised per process."""
    if isinstance(name, FeatureSet):
        return name
    device = torch.device(device or "cpu")
    if name.startswith("domain-"):
        dataset, name = name[len("domain-"):], "domain"
    if name == "domain":
        cache_dir = os.path.abspath(cache_dir or default_cache_dir())
    key = (name, str(device)) + ((dataset, data_root, cache_dir) if name == "domain" else ())
    if key in _CACHE:
        return _CACHE[key]
    if name == "domain":
        if not dataset:
            raise ValueError("the domain feature set needs a dataset name")
        fs = domain_feature_set(dataset, device=device, data_root=data_root, cache_dir=cache_dir)
    elif name in ("inception", "inception-auto"):
        fs = inception_extractor("auto", device)
    elif name == "inception-clean-fid":
        fs = inception_extractor("clean", device)
    elif name == "inception-offline":
        fs = inception_extractor("offline", device)
    elif name == "inception-random":
        fs = inception_extractor("random", device)
    else:
        raise ValueError(f"unknown feature set {name!r} (domain, domain-<dataset>, inception, "
                         "inception-clean-fid, inception-offline, inception-random)")
    _CACHE[key] = fs
    return fs
