"""Sampling for evaluation is split over ranks without changing what is sampled: sample i has
the same label and noise whatever the batch or world size, and 1 and 2 ranks give the same
images and the same FID (issue 10, item 3)."""
import os
import subprocess
import sys

import pytest
import torch
from train_support import DIST_ENV, ROOT

from trainers.diffusion.gaussian import GaussianDiffusion
from trainers.evaluation.evaluate import evaluate_model, generate_samples, sample_labels, sample_seed
from trainers.models.from_config import model_for
from trainers.presets import preset_config
from trainers.training.distributed import free_port

N = 24


def _cfg(**kw):
    return preset_config("smoke", sample_steps=4, sampler="ddpm", cfg_scale=1.5, **kw)


def _model_and_diffusion(cfg):
    model = model_for(cfg).eval()
    torch.manual_seed(1)  # an untrained DiT outputs zeros (adaLN-Zero): give the output layer weights
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model, GaussianDiffusion(cfg.schedule, cfg.num_timesteps, learn_sigma=cfg.learn_sigma)


def test_sample_seeds_and_labels_depend_on_the_index_only():
    assert sample_seed(0, 5) == sample_seed(0, 5)
    assert len({sample_seed(0, i) for i in range(1000)} | {sample_seed(1, i) for i in range(1000)}) == 2000
    assert sample_labels([0, 1, 9, 10, 23], 10).tolist() == [0, 1, 9, 0, 3]


def test_a_sample_does_not_depend_on_its_batch_or_neighbours():
    cfg = _cfg()
    model, diffusion = _model_and_diffusion(cfg)
    whole, labels = generate_samples(model, diffusion, cfg, 8, batch=8)
    small, _ = generate_samples(model, diffusion, cfg, 8, batch=3)
    odd, odd_labels = generate_samples(model, diffusion, cfg, [1, 3, 5, 7], batch=2)
    assert whole.abs().sum() > 0 and not torch.allclose(whole[0], whole[1])
    torch.testing.assert_close(small, whole, rtol=0, atol=1e-5)
    torch.testing.assert_close(odd, whole[1::2], rtol=0, atol=1e-5)
    assert odd_labels.tolist() == labels[1::2].tolist()


def _two_rank_evaluation(cfg, model, out, cache_dir) -> dict:
    """Both ranks as real processes over gloo, each sampling its share."""
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE="2", DTR_CACHE_DIR=cache_dir,
               PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]))
    weights = str(out) + ".weights.pt"
    torch.save(model.state_dict(), weights)
    cmd = [sys.executable, os.path.join(ROOT, "tests", "eval_ranks_worker.py"), cfg.to_json(), weights, str(N), str(out)]
    procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)[-3000:]
    return torch.load(out, weights_only=False)


@pytest.mark.parametrize("feature_set", ["domain"])
def test_one_and_two_ranks_sample_the_same_images_and_score_the_same(tmp_path, shared_cache_dir, monkeypatch,
                                                                      feature_set):
    monkeypatch.setenv("DTR_CACHE_DIR", shared_cache_dir)
    cfg = _cfg(feature_set=feature_set)
    model, diffusion = _model_and_diffusion(cfg)
    one = evaluate_model(model, diffusion, cfg, N, keep_samples=True)
    two = _two_rank_evaluation(cfg, model, tmp_path / "two.pt", shared_cache_dir)
    assert one["eval_world_size"] == 1 and two["eval_world_size"] == 2
    assert one["samples"].shape[0] == two["samples"].shape[0] == N
    torch.testing.assert_close(two["samples"], one["samples"], rtol=0, atol=1e-4)
    for key in ("fid", "precision", "recall", "is_mean", "label_accuracy"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-9), key
    assert one["fid_protocol"] == two["fid_protocol"]
    assert "ddpm-4 cfg=1.5 guided=all n=24" in one["fid_protocol"] and "features=domain" in one["fid_protocol"]


def test_random_inception_has_a_head_so_the_inception_score_is_measured():
    """Offline the real Inception head is missing; the random Inception of the same architecture
    exercises the IS path: one pass gives features and logits (the same as the head applied alone)."""
    import numpy as np

    from trainers.evaluation.feature_sets import get_feature_set
    from trainers.evaluation.metrics import inception_score, sample_features
    fs = get_feature_set("inception-random")  # the instance evaluate_model uses in the next test
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    feats, logits = sample_features(images, fs)
    assert feats.shape == (6, 2048) and logits.shape == (6, 1008) and np.isfinite(logits).all()
    np.testing.assert_allclose(fs.logits(images), logits, rtol=1e-5)
    assert inception_score(logits, splits=1)[0] > 1.0


def test_random_inception_loaded_from_the_cache_is_the_one_built(tmp_path, monkeypatch):
    """The calibrated random Inception is saved once per cache directory; a process that loads it
    gets bit-identical features and logits to the one that built it."""
    from trainers.evaluation.inception import _random_inception
    from trainers.evaluation.metrics import sample_features
    monkeypatch.setenv("DTR_CACHE_DIR", str(tmp_path / "cache"))
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    built = sample_features(images, _random_inception("cpu"))
    assert len(list((tmp_path / "cache" / "inception-random").glob("seed0-*.pt"))) == 1
    loaded = sample_features(images, _random_inception("cpu"))
    for a, b in zip(built, loaded):
        assert (a == b).all()


def test_an_adm_reference_batch_is_the_real_side_and_named_in_the_protocol(tmp_path, monkeypatch):
    """``fid_reference``: the images of an ADM-suite reference batch (arr_0, uint8 NHWC), featurised
    with the run's own feature set; the protocol names it."""
    import numpy as np
    monkeypatch.setenv("DTR_CACHE_DIR", str(tmp_path / "cache"))
    images = np.random.default_rng(0).integers(0, 256, size=(8, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "VIRTUAL_tiny.npz", arr_0=images)
    cfg = _cfg(feature_set="inception-random", fid_reference=str(tmp_path / "VIRTUAL_tiny.npz"))
    model, diffusion = _model_and_diffusion(cfg)
    result = evaluate_model(model, diffusion, cfg, 4)
    assert result["reference_n"] == 8 and result["is_mean"] >= 1.0
    assert f"ref=adm_npz:{tmp_path / 'VIRTUAL_tiny.npz'} (n=8)" in result["fid_protocol"]
    with pytest.raises(FileNotFoundError, match="fid_reference"):
        evaluate_model(model, diffusion, _cfg(fid_reference=str(tmp_path / "missing.npz")), 4)
