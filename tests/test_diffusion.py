"""Tests for trainers/diffusion.py and trainers/sampling.py (CPU, a few seconds)."""
import math

import pytest
import torch
from torch import nn

from trainers.diffusion.gaussian import (
    GaussianDiffusion,
    get_beta_schedule,
    sample_timesteps_stratified,
    sample_timesteps_uniform,
)
from trainers.diffusion.sampling import (
    SpacedDiffusion,
    combine_cfg,
    guided_output,
    respace,
    sample,
    space_timesteps,
)


# ----------------------------------------------------------------------------- test models
class TinyNet(nn.Module):
    """Small conv net honouring the model contract; eps and variance heads are separate
    so gradient flow into each output can be checked.  Records the timesteps it sees."""

    def __init__(self, in_channels=4, num_classes=5, learn_sigma=True, hidden=16):
        super().__init__()
        self.in_channels, self.num_classes, self.learn_sigma = in_channels, num_classes, learn_sigma
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.inp = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.t_mlp = nn.Sequential(nn.Linear(32, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.y_emb = nn.Embedding(num_classes + 1, hidden)
        self.mid = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.eps_head = nn.Conv2d(hidden, in_channels, 3, padding=1)
        self.var_head = nn.Conv2d(hidden, in_channels, 3, padding=1) if learn_sigma else None
        self.seen_t = []

    def _t_embed(self, t):
        freqs = torch.exp(-math.log(10000.0) * torch.arange(16, dtype=torch.float32) / 16)
        ang = t.float()[:, None] * freqs[None]
        return torch.cat([ang.sin(), ang.cos()], dim=1)

    def forward(self, x, t, y=None):
        self.seen_t.append(t.detach().clone())
        c = self.t_mlp(self._t_embed(t))
        if y is not None:
            c = c + self.y_emb(y)
        h = torch.nn.functional.silu(self.inp(x) + c[:, :, None, None])
        h = torch.nn.functional.silu(self.mid(h))
        eps = self.eps_head(h)
        if not self.learn_sigma:
            return eps
        return torch.cat([eps, torch.tanh(self.var_head(h))], dim=1)


class GaussianOracle(nn.Module):
    """Exact E[eps | x_t] for data x0 ~ N(0, s^2 I), on the ORIGINAL grid of ``base``."""

    def __init__(self, base, s, in_channels=4):
        super().__init__()
        self.abar = base.alphas_cumprod
        self.s, self.in_channels, self.num_classes, self.learn_sigma = s, in_channels, 1, False

    def forward(self, x, t, y=None):
        a2 = self.abar[t].float().view(-1, 1, 1, 1)
        b = (1 - a2).sqrt()
        return b / (a2 * self.s ** 2 + b ** 2) * x


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- schedules
def test_linear_schedule_values():
    d = GaussianDiffusion("linear", 1000)
    assert d.betas.dtype == torch.float64 and d.betas.shape == (1000,)
    assert d.betas[0].item() == pytest.approx(1e-4, abs=1e-12)
    assert d.betas[999].item() == pytest.approx(0.02, abs=1e-12)
    assert torch.all(d.snr[1:] < d.snr[:-1])
    assert torch.allclose(d.snr, d.alphas_cumprod / (1 - d.alphas_cumprod))
    # ADM scaling for shorter chains
    assert get_beta_schedule("linear", 100)[-1].item() == pytest.approx(0.2)


def test_cosine_schedule_monotone():
    d = GaussianDiffusion("cosine", 1000)
    assert torch.all(d.alphas_cumprod[1:] < d.alphas_cumprod[:-1])
    assert torch.all(d.snr[1:] < d.snr[:-1])
    assert d.betas.max().item() <= 0.999 + 1e-12
    assert d.alphas_cumprod[-1].item() < 1e-3


def test_posterior_coefficients():
    d = GaussianDiffusion("linear", 50)
    ac, acp = d.alphas_cumprod, d.alphas_cumprod_prev
    assert torch.allclose(d.posterior_variance, d.betas * (1 - acp) / (1 - ac))
    assert torch.isfinite(d.posterior_log_variance_clipped).all()
    assert d.posterior_log_variance_clipped[0] == d.posterior_log_variance_clipped[1]


def test_bad_arguments():
    with pytest.raises(ValueError, match="schedule"):
        GaussianDiffusion("quadratic")
    with pytest.raises(ValueError, match="num_timesteps"):
        GaussianDiffusion("linear", 0)


# ----------------------------------------------------------------------------- forward process
def test_q_sample_statistics():
    d = GaussianDiffusion("linear", 1000)
    x0 = torch.full((4000, 1, 4, 4), 0.7)
    t = torch.full((4000,), 300, dtype=torch.long)
    torch.manual_seed(0)
    xt = d.q_sample(x0, t)
    a = d.alphas_cumprod[300].item()
    assert xt.mean().item() == pytest.approx(math.sqrt(a) * 0.7, abs=0.01)
    assert xt.std().item() == pytest.approx(math.sqrt(1 - a), rel=0.02)
    noise = torch.randn_like(x0[:3])
    t3 = torch.tensor([0, 500, 999])
    xt = d.q_sample(x0[:3], t3, noise)
    for i, ti in enumerate(t3.tolist()):
        ab = d.alphas_cumprod[ti].item()
        assert torch.allclose(xt[i], math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * noise[i], atol=1e-6)


# ----------------------------------------------------------------------------- losses
def test_oracle_mse_is_zero():
    d = GaussianDiffusion("linear", 1000, learn_sigma=True)
    x0 = torch.randn(6, 4, 8, 8)

    class EpsOracle(nn.Module):
        def forward(self, x_t, t, y=None):
            a = d.sqrt_alphas_cumprod[t].float().view(-1, 1, 1, 1)
            b = d.sqrt_one_minus_alphas_cumprod[t].float().view(-1, 1, 1, 1)
            eps = (x_t - a * x0) / b
            return torch.cat([eps, torch.zeros_like(eps)], dim=1)

    t = torch.tensor([0, 1, 10, 200, 600, 999])
    losses = d.training_losses(EpsOracle(), x0, t)
    assert losses["mse"].shape == (6,)
    assert losses["mse"].max().item() < 1e-6


def test_losses_pair_with_their_samples():
    torch.manual_seed(0)
    d = GaussianDiffusion("linear", 1000, learn_sigma=True)
    model = TinyNet()
    x0, noise = torch.randn(8, 4, 8, 8), torch.randn(8, 4, 8, 8)
    t = torch.tensor([0, 3, 50, 100, 400, 700, 900, 999])
    y = torch.arange(8) % 5
    base = d.training_losses(model, x0, t, {"y": y}, noise)
    assert base["mse"].shape == (8,) and base["vb"].shape == (8,)
    perm = torch.randperm(8, generator=gen(1))
    shuf = d.training_losses(model, x0[perm], t[perm], {"y": y[perm]}, noise[perm])
    for k in ("mse", "vb"):
        assert torch.allclose(shuf[k], base[k][perm], rtol=1e-5, atol=1e-6)
    # a weighted per-sample loss pairs each weight with its own sample
    w = d.snr[t].float()
    assert torch.allclose((w * base["mse"] + base["vb"])[perm], w[perm] * shuf["mse"] + shuf["vb"],
                          rtol=1e-5, atol=1e-6)
    # and differs from the loss of the un-permuted weights (no batch broadcasting slip)
    assert not torch.allclose(w * shuf["mse"], w[perm] * shuf["mse"])


def test_vb_finite_nonnegative_and_stop_grad():
    torch.manual_seed(0)
    d = GaussianDiffusion("linear", 1000, learn_sigma=True)
    model = TinyNet()
    x0 = torch.rand(8, 4, 8, 8) * 2 - 1
    t = torch.tensor([0, 0, 1, 5, 100, 500, 900, 999])
    losses = d.training_losses(model, x0, t, {"y": torch.zeros(8, dtype=torch.long)})
    vb = losses["vb"]
    assert torch.isfinite(vb).all() and (vb >= -1e-6).all() and vb.abs().sum() > 0
    vb.sum().backward()
    assert model.eps_head.weight.grad is None or model.eps_head.weight.grad.abs().max() == 0
    assert model.var_head.weight.grad.abs().max() > 0
    model.zero_grad(set_to_none=True)
    d.training_losses(model, x0, t)["mse"].sum().backward()
    assert model.eps_head.weight.grad.abs().max() > 0
    g = model.var_head.weight.grad
    assert g is None or g.abs().max() == 0


def test_vb_zero_without_learn_sigma_and_rescaled():
    torch.manual_seed(0)
    d = GaussianDiffusion("linear", 1000, learn_sigma=False)
    out = d.training_losses(TinyNet(learn_sigma=False), torch.randn(4, 4, 8, 8),
                            torch.tensor([0, 10, 500, 999]))
    assert torch.equal(out["vb"], torch.zeros(4))
    # vb is scaled by T / 1000 (ADM RESCALED_MSE)
    d100 = GaussianDiffusion("linear", 100, learn_sigma=True)
    model = TinyNet()
    x0, noise, t = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8), torch.tensor([1, 5, 50, 99])
    x_t = d100.q_sample(x0, t, noise)
    raw = d100.vb_terms_bpd(model(x_t, t).detach(), x0, x_t, t)
    got = d100.training_losses(model, x0, t, noise=noise)["vb"]
    assert torch.allclose(got, raw * 0.1, rtol=1e-5)


# ----------------------------------------------------------------------------- timestep samplers
def test_uniform_sampler_reproducible():
    a = sample_timesteps_uniform(512, 1000, gen(3))
    b = sample_timesteps_uniform(512, 1000, gen(3))
    assert a.dtype == torch.long and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 999


def test_stratified_sampler_coverage():
    bounds = [(0, 99), (100, 349), (350, 350), (351, 999)]
    t, idx = sample_timesteps_stratified(400, bounds, gen(0))
    assert t.shape == idx.shape == (400,) and t.dtype == torch.long
    assert torch.equal(torch.bincount(idx, minlength=4), torch.full((4,), 100))
    for j, (lo, hi) in enumerate(bounds):
        tj = t[idx == j]
        assert tj.min() >= lo and tj.max() <= hi
        assert torch.equal(idx[j * 100:(j + 1) * 100], torch.full((100,), j))
    assert t[idx == 0].unique().numel() > 50  # actually spread inside its interval
    t2, _ = sample_timesteps_stratified(400, bounds, gen(0))
    assert torch.equal(t, t2)
    with pytest.raises(ValueError, match="divisible"):
        sample_timesteps_stratified(10, bounds, gen(0))


# ----------------------------------------------------------------------------- respacing
def test_space_timesteps_values():
    s = space_timesteps(1000, 250)
    assert len(s) == 250 and s[0] == 0 and s[-1] == 999 and s[1] == 4
    assert space_timesteps(1000, 1000) == list(range(1000))
    assert space_timesteps(100, 10) == [0, 11, 22, 33, 44, 55, 66, 77, 88, 99]
    # round half to even inside a section (24.5 -> 24), as ADM
    assert space_timesteps(100, "2,3") == [0, 49, 50, 74, 99]
    with pytest.raises(ValueError):
        space_timesteps(10, 11)


def test_respaced_betas():
    d = GaussianDiffusion("linear", 1000)
    sp = respace(d, 1000)
    assert torch.allclose(sp.betas, d.betas, rtol=1e-10, atol=0)
    sp = respace(d, 25)
    assert sp.num_timesteps == 25
    assert torch.allclose(sp.alphas_cumprod, d.alphas_cumprod[sp.timestep_map], rtol=1e-12)


def test_model_receives_original_grid_timesteps():
    torch.manual_seed(0)
    d = GaussianDiffusion("linear", 1000, learn_sigma=True)
    model = TinyNet()
    sample(model, d, (2, 4, 8, 8), steps=10, method="ddpm", generator=gen(0))
    seen = [int(t[0]) for t in model.seen_t]
    assert seen == space_timesteps(1000, 10)[::-1]
    assert seen[0] == 999 and seen[-1] == 0


# ----------------------------------------------------------------------------- samplers
def test_ddim_determinism():
    torch.manual_seed(0)
    d = GaussianDiffusion("linear", 1000, learn_sigma=True)
    model = TinyNet()
    y = torch.tensor([0, 1, 2])
    kw = dict(steps=20, method="ddim", y=y, cfg_scale=1.5)
    a = sample(model, d, (3, 4, 8, 8), generator=gen(7), **kw)
    b = sample(model, d, (3, 4, 8, 8), generator=gen(7), **kw)
    c = sample(model, d, (3, 4, 8, 8), generator=gen(8), **kw)
    assert torch.isfinite(a).all() and torch.equal(a, b) and not torch.allclose(a, c)
    e1 = sample(model, d, (3, 4, 8, 8), generator=gen(7), eta=1.0, **kw)
    assert not torch.allclose(a, e1)  # eta > 0 injects noise


def test_ddpm_full_steps_matches_unrespaced_and_statistics():
    T, s = 200, 0.5
    d = GaussianDiffusion("linear", T, learn_sigma=False)
    oracle = GaussianOracle(d, s)
    shape = (64, 4, 8, 8)
    full = sample(oracle, d, shape, steps=T, method="ddpm", generator=gen(0))
    plain = sample(oracle, d, shape, steps=None, method="ddpm", generator=gen(0))
    assert torch.allclose(full, plain, atol=1e-5)
    assert full.mean().item() == pytest.approx(0.0, abs=0.03)
    assert full.std().item() == pytest.approx(s, rel=0.05)
    # respaced DDIM on Gaussian data is linear: x0 = prod_i k_i * x_T, with per step
    # k = a' * a s^2 / (a^2 s^2 + b^2) + b' * b / (a^2 s^2 + b^2)  (a = sqrt(abar), b = sqrt(1 - abar))
    ddim = sample(oracle, d, shape, steps=25, method="ddim", generator=gen(1))
    abar = d.alphas_cumprod[space_timesteps(T, 25)].tolist()[::-1] + [1.0]
    k = 1.0
    for ab, ab_next in zip(abar[:-1], abar[1:]):
        a, b, a2, b2 = math.sqrt(ab), math.sqrt(1 - ab), math.sqrt(ab_next), math.sqrt(1 - ab_next)
        den = ab * s ** 2 + (1 - ab)
        k *= a2 * a * s ** 2 / den + b2 * b / den
    x_T = torch.randn(shape, generator=gen(1))
    assert torch.allclose(ddim, k * x_T, rtol=1e-4, atol=1e-5)
    # coarse ancestral sampling is still close to the data distribution
    ddpm = sample(oracle, d, shape, steps=50, method="ddpm", generator=gen(1))
    assert ddpm.std().item() == pytest.approx(s, rel=0.1)


def test_clip_denoised():
    torch.manual_seed(0)
    d = GaussianDiffusion("linear", 1000, learn_sigma=True)
    x = sample(TinyNet(), d, (2, 4, 8, 8), steps=5, method="ddim", clip_denoised=True,
               generator=gen(0))
    assert x.abs().max() <= 1.0 + 1e-5


# ----------------------------------------------------------------------------- guidance
def test_cfg_scale_one_equals_conditional():
    torch.manual_seed(0)
    d = GaussianDiffusion("linear", 1000, learn_sigma=True)
    model = TinyNet()
    y = torch.tensor([1, 3])
    plain = sample(model, d, (2, 4, 8, 8), steps=10, y=y, cfg_scale=1.0, generator=gen(2))
    n_calls = len(model.seen_t)
    assert all(t.shape == (2,) for t in model.seen_t)  # no doubling at scale 1
    # the doubled-batch path at a scale ~1 gives the conditional sample (variance from cond)
    doubled = sample(model, d, (2, 4, 8, 8), steps=10, y=y, cfg_scale=1.0 + 1e-7, generator=gen(2))
    assert all(t.shape == (4,) for t in model.seen_t[n_calls:])
    assert torch.allclose(plain, doubled, atol=1e-4)
    guided = sample(model, d, (2, 4, 8, 8), steps=10, y=y, cfg_scale=4.0, generator=gen(2))
    assert not torch.allclose(plain, guided, atol=1e-3)


def test_guided_channels():
    torch.manual_seed(0)
    model = TinyNet()
    x, t, y = torch.randn(3, 4, 8, 8), torch.tensor([10, 500, 999]), torch.tensor([0, 2, 4])
    with torch.no_grad():
        cond = model(x, t, y)
        uncond = model(x, t, torch.full_like(y, model.num_classes))
        g3 = guided_output(model, x, t, y, cfg_scale=4.0, guided_channels=3)
        gall = guided_output(model, x, t, y, cfg_scale=4.0)
    expect = uncond[:, :3] + 4.0 * (cond[:, :3] - uncond[:, :3])
    assert torch.allclose(g3[:, :3], expect, atol=1e-5)
    assert torch.allclose(g3[:, 3], cond[:, 3], atol=1e-6)       # channel 3 left conditional
    assert torch.allclose(g3[:, 4:], cond[:, 4:], atol=1e-6)     # variance from cond half
    assert torch.allclose(gall[:, :4], uncond[:, :4] + 4.0 * (cond[:, :4] - uncond[:, :4]), atol=1e-5)
    assert not torch.allclose(gall[:, 3], cond[:, 3], atol=1e-4)
    assert torch.allclose(combine_cfg(cond, uncond, 1.0, 4), cond, atol=1e-6)
    with pytest.raises(ValueError):
        combine_cfg(cond, uncond, 2.0, 4, guided_channels=5)


def test_unconditional_model_no_doubling():
    torch.manual_seed(0)
    d = GaussianDiffusion("linear", 1000, learn_sigma=True)
    model = TinyNet(num_classes=1)
    sample(model, d, (2, 4, 8, 8), steps=3, cfg_scale=4.0, y=torch.zeros(2, dtype=torch.long),
           generator=gen(0))
    assert all(t.shape == (2,) for t in model.seen_t)
    assert isinstance(respace(d, 3), SpacedDiffusion)


def test_kl_and_decoder_likelihood_against_torch_distributions():
    from torch.distributions import Normal, kl_divergence

    from trainers.diffusion.gaussian import (
        discretized_gaussian_log_likelihood,
        normal_kl,
    )
    g = gen(0)
    m1, m2 = torch.randn(100, generator=g), torch.randn(100, generator=g)
    l1, l2 = torch.randn(100, generator=g), torch.randn(100, generator=g)
    ref = kl_divergence(Normal(m1, (0.5 * l1).exp()), Normal(m2, (0.5 * l2).exp()))
    assert torch.allclose(normal_kl(m1, l1, m2, l2), ref, atol=1e-5)
    x = torch.tensor([-1.0, -0.5, 0.0, 0.3, 1.0])
    mean, log_scale = torch.full_like(x, 0.1), torch.full_like(x, math.log(0.2))
    n = Normal(mean, 0.2)
    exact = torch.where(x < -0.999, n.cdf(x + 1 / 255), torch.where(
        x > 0.999, 1 - n.cdf(x - 1 / 255), n.cdf(x + 1 / 255) - n.cdf(x - 1 / 255)))
    got = discretized_gaussian_log_likelihood(x, mean, log_scale).exp()
    assert torch.allclose(got, exact, rtol=5e-3, atol=1e-5)
