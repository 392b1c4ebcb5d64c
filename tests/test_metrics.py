"""Metrics: FID, IS, precision/recall, the domain classifier and the Inception extractors.

The Fashion-MNIST domain classifier is trained once per session into ``shared_cache_dir``
(about a minute on 2 cores) and reused by every test here.
"""
import json
import os
import time
import urllib.error
import warnings

import numpy as np
import pytest
import torch

from trainers.evaluation import feature_sets, features, inception, metrics
from trainers.evaluation.domain_classifier import (
    ClassifierConfig,
    classifier_key,
    load_or_train,
    load_split_tensors,
    train_classifier,
)

DATASET = "fashion_mnist"


@pytest.fixture(scope="session")
def domain(shared_cache_dir):
    t0 = time.perf_counter()
    _, info = load_or_train(DATASET, cache_dir=shared_cache_dir)
    fs = feature_sets.get_feature_set("domain", DATASET, cache_dir=shared_cache_dir)
    print(f"domain classifier ready in {time.perf_counter() - t0:.1f}s: {info}")
    return fs, info


@pytest.fixture(scope="session")
def real_test():
    return load_split_tensors(DATASET, "test")


# --- pure maths ----------------------------------------------------------------------------------

def test_fid_of_identical_features_is_zero():
    a = np.random.default_rng(0).normal(size=(2000, 64)) @ np.random.default_rng(1).normal(size=(64, 64))
    assert abs(metrics.fid_from_features(a, a)) < 1e-6
    assert metrics.fid_from_features(a, a + 1.0) == pytest.approx(64.0, rel=1e-6)  # mean shift only


@pytest.mark.parametrize("n_real,n_fake", [(600, 500), (12, 20)])  # full-rank and singular covariances
def test_fid_agrees_with_clean_fids_own_formula(n_real, n_fake):
    """The eigenvalue route to Tr((S1 S2)^(1/2)) gives clean-fid's number (its sqrtm of S1 S2)."""
    from cleanfid.fid import frechet_distance as cleanfid_frechet
    rng = np.random.default_rng(3)
    mix = rng.normal(size=(256, 256)) / 16
    real = rng.normal(size=(n_real, 256)) @ mix
    fake = rng.normal(size=(n_fake, 256)) @ (mix + 0.1 * rng.normal(size=(256, 256)) / 16) + 0.05
    stats = (*metrics.feature_stats(fake), *metrics.feature_stats(real))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that the singular product has no exact sqrtm
        expected = float(cleanfid_frechet(*stats))
    assert metrics.frechet_distance(*stats) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="non-finite"):
        metrics.frechet_distance(stats[0], stats[1] * np.nan, stats[2], stats[3])


def test_precision_recall_identical_and_disjoint():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 8))
    assert metrics.precision_recall(a, a, k=3) == (1.0, 1.0)
    assert metrics.precision_recall(a, rng.normal(size=(300, 8)) + 100.0, k=3) == (0.0, 0.0)


def test_inception_score_bounds():
    uniform = torch.rand(5000, 10, generator=torch.Generator().manual_seed(0))  # U(0,1) logits: IS ~ 1.04
    mean, std = metrics.inception_score(uniform)
    assert 1.0 <= mean < 1.1 and std < 0.01
    onehot = np.eye(10)[np.arange(5000) % 10]
    assert metrics.inception_score(onehot)[0] == pytest.approx(10.0, rel=1e-6)          # probabilities
    assert metrics.inception_score(30.0 * onehot, probs=False)[0] == pytest.approx(10.0, rel=1e-3)  # logits


def test_image_conversions_round_trip():
    u8 = np.random.default_rng(0).integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    x = features.to_float_nchw(u8)
    assert x.shape == (4, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(features.to_uint8_nhwc(x), u8)


# --- domain classifier ---------------------------------------------------------------------------

def test_domain_classifier_accuracy_and_sidecar(domain, shared_cache_dir):
    fs, info = domain
    assert fs.name == "domain-fashion_mnist" and fs.dim == 128
    assert info["test_accuracy"] >= 0.90
    sidecar = os.path.join(shared_cache_dir, "domain_classifier", classifier_key(DATASET, ClassifierConfig()) + ".json")
    with open(sidecar) as fh:
        assert json.load(fh)["test_accuracy"] == info["test_accuracy"]


def test_classifier_training_is_deterministic(real_test):
    x, y = real_test[0][:512], real_test[1][:512]
    cfg = ClassifierConfig(width=8, epochs=1, min_steps=4, batch_size=64, seed=3)
    a, b = train_classifier(x, y, 10, cfg).state_dict(), train_classifier(x, y, 10, cfg).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fid_real_vs_real_is_small(domain, real_test, shared_cache_dir):
    fs, _ = domain
    real = real_test[0][:2000]
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fid_real = metrics.fid_against_reference(real, DATASET, fs, n=10_000, cache_dir=shared_cache_dir)
    fid_noise = metrics.fid_against_reference(noise, DATASET, fs, n=10_000, cache_dir=shared_cache_dir)
    assert fid_real < fid_noise / 10, (fid_real, fid_noise)


def test_reference_stats_are_cached(domain, shared_cache_dir):
    fs, _ = domain
    path = metrics._reference_path(DATASET, fs, "test", 500, 32, None, shared_cache_dir)
    if os.path.exists(path):  # left by an earlier session in $DTR_TEST_CACHE_DIR
        os.remove(path)
    before = metrics.REFERENCE_COMPUTATIONS
    mu, sigma = metrics.reference_stats(DATASET, fs, split="test", n=500, cache_dir=shared_cache_dir)
    assert mu.shape == (128,) and sigma.shape == (128, 128)
    mtime = os.path.getmtime(path)
    metrics._MEMO.clear()  # force a read from disk
    mu2, _ = metrics.reference_stats(DATASET, fs, split="test", n=500, cache_dir=shared_cache_dir)
    assert metrics.REFERENCE_COMPUTATIONS == before + 1
    assert os.path.getmtime(path) == mtime and np.array_equal(mu, mu2)


def test_evaluate_samples_on_real_images(domain, real_test, shared_cache_dir):
    fs, _ = domain
    out = metrics.evaluate_samples(real_test[0][:500], DATASET, fs, split="test", ref_n=2000,
                                   cache_dir=shared_cache_dir)
    assert out["feature_set"] == "domain-fashion_mnist" and out["num_samples"] == 500
    assert out["is_mean"] > 5 and out["precision"] > 0.6 and out["recall"] > 0.6, out
    assert np.isfinite(out["fid"]) and out["fid"] >= 0


# --- Inception ------------------------------------------------------------------------------------

def test_offline_inception_features():
    """Slow-ish: the TorchScript Inception takes ~0.4 s per image on 2 cores, so 3 images."""
    fs = inception.inception_extractor("offline")
    assert fs.name == "inception-offline"
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    feats = fs.features(x)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    u8 = features.to_uint8_nhwc(x[:1])  # the same image as uint8 NHWC gives the same features
    assert np.allclose(fs.features(u8), feats[:1], atol=1e-4)


def test_inception_auto_falls_back_offline_without_network(monkeypatch):
    def no_network(timeout):
        raise urllib.error.URLError("offline")
    monkeypatch.setattr(inception, "_fetch_clean_fid_weights", no_network)
    t0 = time.perf_counter()
    assert inception.inception_extractor("auto").name == "inception-offline"
    assert time.perf_counter() - t0 < 30
    with pytest.raises(urllib.error.URLError):
        inception.inception_extractor("clean")


def test_fid_of_a_single_image_is_refused_not_nan():
    """One image has no covariance: FID refuses it in one line instead of handing scipy a NaN matrix."""
    from trainers.evaluation.metrics import fid_from_features
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="at least 2 images"):
        fid_from_features(rng.normal(size=(1, 8)), rng.normal(size=(5, 8)))
    assert np.isfinite(fid_from_features(rng.normal(size=(4, 8)), rng.normal(size=(5, 8))))
