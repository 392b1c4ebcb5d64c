"""Linear CKA (Kornblith et al. 2019) and the block-output capture behind the CKA heatmaps."""
import pytest
import torch

from trainers.diffusion.gaussian import GaussianDiffusion
from trainers.evaluation.cka import (
    capture_block_outputs,
    cka_matrix,
    linear_cka,
    plot_cka_heatmaps,
)
from trainers.models import build_model
from trainers.routing.spec import RoutingSpec


def feats(n=50, p=20, seed=0):
    return torch.randn(n, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("p", [20, 200])  # feature form and Gram form
def test_cka_identity_and_invariances(p):
    x = feats(p=p)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    y = torch.tanh(x @ torch.randn(p, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    base = linear_cka(x, y)
    assert 0.0 < base < 1.0
    assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-9)  # orthogonal transform
    assert linear_cka(3.7 * x, 0.01 * y) == pytest.approx(base, abs=1e-9)  # isotropic scaling
    assert linear_cka(x + 5.0, y) == pytest.approx(base, abs=1e-9)  # centring
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), abs=1e-12)


def test_cka_of_independent_features_is_small():
    x, y = feats(n=2000, p=10, seed=3), feats(n=2000, p=10, seed=4)
    assert linear_cka(x, y) < 0.05
    # but a non-isotropic linear map of x keeps it high
    assert linear_cka(x, x @ torch.diag(torch.linspace(0.5, 2.0, 10, dtype=torch.float64))) > 0.8


def test_cka_matrix():
    stack = torch.stack([feats(seed=s) for s in range(3)] + [2 * feats(seed=0)]).float()
    mat = cka_matrix(stack)
    assert mat.shape == (4, 4) and torch.allclose(mat, mat.T)
    assert torch.allclose(mat.diag(), torch.ones(4, dtype=torch.float64))
    assert mat[0, 3] == pytest.approx(1.0) and mat[0, 1] < 0.9
    tokens = cka_matrix(torch.randn(2, 3, 4 * 8), rows="tokens", channels=8)
    assert tokens.shape == (2, 2)
    with pytest.raises(ValueError):
        cka_matrix(torch.randn(2, 3, 10), rows="tokens", channels=3)


@pytest.mark.parametrize("name,channels,routing,blocks", [
    ("DiT-T/4", 1, RoutingSpec(kind="dtr"), 4),
    ("DiT-T/4", 1, RoutingSpec(kind="learned"), 4),
    ("ADM-T", 1, None, 4 + 1 + 4),  # input blocks, middle block, output blocks
])
def test_capture_shapes(name, channels, routing, blocks):
    torch.manual_seed(0)
    model = build_model(name, input_size=32, in_channels=channels, num_classes=10, routing=routing).train()
    x = torch.randn(3, channels, 32, 32)
    y = torch.tensor([0, 1, 2])
    grid = [0, 250, 500, 999]
    diffusion = GaussianDiffusion("cosine", 1000)
    out = capture_block_outputs(model, x, y, grid, diffusion=diffusion)
    assert model.training  # mode restored
    assert sorted(out) == list(range(blocks))
    if name.startswith("DiT"):
        assert out[0].shape == (4, 3, 64 * 128)  # (timesteps, N, tokens * D)
    else:
        assert out[0].shape == (4, 3, 32 * 32 * 32)  # first conv: (timesteps, N, C * H * W)
    again = capture_block_outputs(model, x, y, grid, diffusion=diffusion)  # fixed noise: reproducible
    assert all(torch.equal(out[k], again[k]) for k in out)
    mats = cka_matrix(out)
    assert set(mats) == set(out) and mats[1].shape == (4, 4)


def test_capture_uses_the_runs_schedule():
    """The noised inputs come from the diffusion the caller passes (the run's schedule): cosine and
    linear give different block outputs at the same t; a call without it is refused."""
    torch.manual_seed(0)
    model = build_model("DiT-T/4", input_size=16, in_channels=1, num_classes=10, routing=RoutingSpec(kind="dtr"))
    x, y, grid = torch.randn(2, 1, 16, 16), torch.tensor([0, 1]), [100, 500]
    runs = {s: capture_block_outputs(model, x, y, grid, diffusion=GaussianDiffusion(s, 1000))
            for s in ("linear", "cosine")}
    assert not torch.allclose(runs["linear"][0], runs["cosine"][0], atol=1e-3)
    with pytest.raises(TypeError):
        capture_block_outputs(model, x, y, grid)


def test_plot_cka_heatmaps(tmp_path):
    grid = [0, 300, 600, 999]
    results = {name: {b: cka_matrix(torch.randn(4, 5, 12)) for b in range(4)}
               for name in ("vanilla", "R-TR", "DTR", "learned")}
    path = plot_cka_heatmaps(results, grid, str(tmp_path / "cka.png"), title="test")
    assert (tmp_path / "cka.png").stat().st_size > 1000 and path.endswith("cka.png")
