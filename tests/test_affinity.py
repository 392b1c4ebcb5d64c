"""ANT's measured task affinity (trainers/diffusion/affinity.py, python -m platform.affinity) and its
use by ANT-UW (uw_cluster_method="affinity")."""
import json
import os

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from trainers.config import RunConfig
from trainers.diffusion.affinity import (
    affinity_clusters,
    affinity_matrix,
    bin_timesteps,
    check_affinity_file,
    load_affinity,
    save_affinity,
)
from trainers.diffusion.gaussian import GaussianDiffusion
from trainers.diffusion.interval_clustering import equal_width_clusters, interval_clusters
from trainers.files import atomic_write_text
from trainers.models import build_model
from trainers.presets import preset_config
from trainers.training.checkpoint import COMPLETE, tag_for
from trainers.training.objective import uw_cluster_bounds


def _tiny_dit(seed=0):
    torch.manual_seed(seed)
    model = build_model("DiT-T/4", input_size=8, in_channels=1, num_classes=10, learn_sigma=True)
    with torch.no_grad():  # leave adaLN-Zero's start: every parameter gets a gradient
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.02 * torch.randn_like(p))
    return model


def test_affinity_of_a_tiny_model_is_a_cosine_matrix():
    model, diffusion = _tiny_dit(), GaussianDiffusion("linear", 60, learn_sigma=True)
    g = torch.Generator().manual_seed(1)
    x0, y = torch.rand((4, 1, 8, 8), generator=g) * 2 - 1, torch.randint(0, 10, (4,), generator=g)
    a, bins = affinity_matrix(model, diffusion, x0, y, bins=6, seed=3)
    assert bins == equal_width_clusters(60, 6) and a.shape == (6, 6)
    assert np.allclose(a, a.T, atol=1e-5) and np.allclose(np.diag(a), 1.0, atol=1e-5)
    assert (np.abs(a) <= 1 + 1e-9).all() and a[0, -1] < a[0, 1] < 1 - 1e-3  # it measures something
    assert np.array_equal(a, affinity_matrix(model, diffusion, x0, y, bins=6, seed=3)[0])  # deterministic
    # one entry by hand: the same images, noise and in-bin offsets for both bins, then the cosine
    gen = torch.Generator().manual_seed(3)
    noise, u = torch.randn(x0.shape, generator=gen), torch.rand(4, generator=gen)
    steps = bin_timesteps(bins, u)
    assert all(bins[b][0] <= t <= bins[b][1] for b in range(6) for t in steps[b].tolist())
    params = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    grads = []
    for b in (1, 4):
        terms = diffusion.training_losses(model, x0, steps[b], model_kwargs={"y": y}, noise=noise)
        grads.append(torch.cat([q.flatten() for q in torch.autograd.grad((terms["mse"] + terms["vb"]).mean(),
                                                                         params)]).double())
    assert a[1, 4] == pytest.approx(float(grads[0] @ grads[1] / grads[0].norm() / grads[1].norm()), abs=1e-6)


def test_clustering_recovers_the_blocks_of_a_block_diagonal_matrix():
    bins = equal_width_clusters(100, 10)  # bins of 10 timesteps
    sizes = [2, 3, 1, 4]  # blocks, in bins
    a = np.full((10, 10), -0.3)
    start = 0
    for s in sizes:
        a[start:start + s, start:start + s] = 1.0
        start += s
    assert interval_clusters(a, 4, method="affinity") == [(0, 1), (2, 4), (5, 5), (6, 9)]
    assert affinity_clusters(a, bins, 4) == [(0, 19), (20, 49), (50, 59), (60, 99)]
    # a multi-expert member's interval [25, 99]: the bins it overlaps, clipped to it
    assert affinity_clusters(a, bins, 3, 25, 99) == [(25, 49), (50, 59), (60, 99)]
    with pytest.raises(ValueError, match="at least 9 affinity bins"):
        affinity_clusters(a, bins, 9, 25, 99)


def test_ant_uw_takes_its_clusters_from_the_file_and_refuses_a_bad_one(tmp_path):
    bins = equal_width_clusters(1000, 8)
    a = np.eye(8) * 0.5 + 0.5
    a[:4, :4] = a[4:, 4:] = 1.0
    path = str(tmp_path / "aff.npy")
    save_affinity(path, a, bins, {"num_timesteps": 1000})
    cfg = RunConfig(weighting="ant_uw", uw_clusters=2, uw_cluster_method="affinity", uw_affinity_file=path,
                    global_batch=8, micro_batch=8)
    assert uw_cluster_bounds(cfg, GaussianDiffusion("linear", 1000)) == [(0, 499), (500, 999)]
    with pytest.raises(ValueError, match="needs uw_affinity_file"):
        cfg.replace(uw_affinity_file="")
    with pytest.raises(ValueError, match="not found"):
        cfg.replace(uw_affinity_file=str(tmp_path / "missing.npy"))
    with pytest.raises(ValueError, match="measured with T=1000; this run has num_timesteps=500"):
        cfg.replace(num_timesteps=500)
    save_affinity(str(tmp_path / "short"), a[:3, :3], bins[:3], {"num_timesteps": 500})
    with pytest.raises(ValueError, match="bins cover timesteps 0..374, not 0..499"):
        check_affinity_file(str(tmp_path / "short.npy"), 500)


def test_cli_writes_matrix_settings_and_figure(tmp_path, shared_cache_dir, monkeypatch, capsys):
    """``python -m platform.affinity`` (in process) on a checkpoint directory in the trainer's format
    (config.json, ema.pt, COMPLETE) of a smoke-preset model, with Fashion-MNIST images."""
    from platform.affinity import main
    monkeypatch.setenv("DTR_CACHE_DIR", shared_cache_dir)
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / tag_for(5)
    os.makedirs(ckpt)
    cfg = preset_config("smoke", run_dir=str(run), run_name="run")
    from trainers.models.from_config import model_for
    torch.save(model_for(cfg).state_dict(), ckpt / "ema.pt")
    atomic_write_text(str(ckpt / "config.json"), cfg.to_json())
    atomic_write_text(str(ckpt / COMPLETE), "5")
    out = tmp_path / "aff" / "m.npy"
    assert main(["--run-dir", str(run), "--bins", "5", "--samples", "4", "--clusters", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    a, bins, settings = load_affinity(str(out))
    assert a.shape == (5, 5) and bins == equal_width_clusters(1000, 5)
    assert np.allclose(a, a.T, atol=1e-5) and np.allclose(np.diag(a), 1.0, atol=1e-5)
    assert settings["checkpoint"] == str(ckpt) and settings["num_timesteps"] == 1000 and settings["samples"] == 4
    assert json.loads((tmp_path / "aff" / "m.json").read_text())["weights"] == "ema"
    assert plt.imread(str(tmp_path / "aff" / "m.png")).ndim == 3
    clusters = affinity_clusters(a, bins, 3)
    assert "affinity clusters: " + ", ".join(f"[{lo}, {hi}]" for lo, hi in clusters) in text
    assert main(["--run-dir", str(run), "--checkpoint", "7", "--out", str(out)]) == 2
    assert "no checkpoint of step 7" in capsys.readouterr().err
