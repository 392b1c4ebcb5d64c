"""Loss weightings and ANT-UW (docs/loss_weighting.md)."""
import math

import pytest
import torch

from trainers.diffusion.weighting import (
    WEIGHTINGS,
    UncertaintyWeighting,
    combine_loss,
    loss_weight,
)

SNR = torch.tensor([0.0, 0.5, 5.0, 10.0, 100.0], dtype=torch.float64)


def test_vanilla_and_ant_uw_are_ones():
    for kind in ("vanilla", "ant_uw"):
        assert torch.equal(loss_weight(kind, SNR), torch.ones(5, dtype=torch.float64))
    assert WEIGHTINGS == ("vanilla", "min_snr", "p2", "ant_uw")


def test_min_snr_hand_values():
    w = loss_weight("min_snr", SNR)  # gamma = 5
    assert torch.allclose(w, torch.tensor([1.0, 1.0, 1.0, 0.5, 0.05], dtype=torch.float64))
    w1 = loss_weight("min_snr", SNR, gamma=1.0)
    assert torch.allclose(w1, torch.tensor([1.0, 1.0, 0.2, 0.1, 0.01], dtype=torch.float64))


def test_p2_hand_values():
    w = loss_weight("p2", SNR)  # k = 1, gamma = 1
    assert torch.allclose(w, torch.tensor([1.0, 1 / 1.5, 1 / 6, 1 / 11, 1 / 101], dtype=torch.float64))
    w = loss_weight("p2", SNR, gamma=0.5, k=1.0)
    assert torch.allclose(w, torch.tensor([1.0, 1.5**-0.5, 6**-0.5, 11**-0.5, 101**-0.5], dtype=torch.float64))
    w = loss_weight("p2", torch.tensor([3.0]), gamma=2.0, k=0.0)
    assert w.item() == pytest.approx(1 / 9)


def test_weights_pair_with_their_own_samples():
    g = torch.Generator().manual_seed(0)
    snr_sched = torch.rand(1000, generator=g, dtype=torch.float64) * 50
    t = torch.randint(0, 1000, (16,), generator=g)
    mse = torch.rand(16, generator=g)
    vb = torch.rand(16, generator=g)
    perm = torch.randperm(16, generator=g)
    for kind in WEIGHTINGS:
        w = loss_weight(kind, snr_sched[t])
        assert w.shape == (16,)
        assert torch.equal(loss_weight(kind, snr_sched[t][perm]), w[perm])
        out = combine_loss(mse, vb, t, snr_sched, kind)
        assert out.shape == (16,)
        assert torch.equal(combine_loss(mse[perm], vb[perm], t[perm], snr_sched, kind), out[perm])
        # Each sample gets the weight of its own timestep; VB is unweighted.
        for i in range(16):
            expect = loss_weight(kind, snr_sched[t[i : i + 1]]).float() * mse[i] + vb[i]
            assert out[i].item() == pytest.approx(expect.item(), rel=1e-6)


def test_combine_loss_without_vb_and_shape_checks():
    snr_sched = torch.tensor([10.0, 1.0], dtype=torch.float64)
    t = torch.tensor([0, 1])
    mse = torch.tensor([2.0, 3.0])
    assert torch.allclose(combine_loss(mse, None, t, snr_sched, "min_snr"), torch.tensor([1.0, 3.0]))
    with pytest.raises(ValueError):
        combine_loss(mse[:, None], None, t, snr_sched, "p2")  # the released-code broadcast
    with pytest.raises(ValueError):
        combine_loss(mse, torch.zeros(3), t, snr_sched, "p2")
    with pytest.raises(ValueError):
        combine_loss(mse, None, t[:1], snr_sched, "p2")
    with pytest.raises(ValueError):
        loss_weight("p2", SNR[:, None])


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="kind"):
        loss_weight("snr", SNR)
    for g in (0.0, -1.0):
        with pytest.raises(ValueError, match="gamma"):
            loss_weight("min_snr", SNR, gamma=g)
        with pytest.raises(ValueError, match="gamma"):
            loss_weight("p2", SNR, gamma=g)
    with pytest.raises(ValueError, match="k"):
        loss_weight("p2", SNR, k=-0.1)


def test_uw_at_zero_equals_half_mean_of_cluster_means():
    uw = UncertaintyWeighting(3)
    loss = torch.tensor([1.0, 3.0, 4.0, 10.0, 20.0, 30.0])
    idx = torch.tensor([0, 0, 1, 2, 2, 2])
    # Lbar = (2, 4, 20); L = sum_j 0.5 * Lbar_j / 3 = 0.5 * mean(2, 4, 20) = 13/3
    assert uw(loss, idx).item() == pytest.approx(13 / 3)
    assert uw(loss[torch.tensor([5, 2, 0, 4, 1, 3])], idx[torch.tensor([5, 2, 0, 4, 1, 3])]).item() == pytest.approx(13 / 3)


def test_uw_gradient_matches_analytic():
    K = 4
    uw = UncertaintyWeighting(K)
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([0.3, -0.7, 1.2, 0.0]))
    g = torch.Generator().manual_seed(1)
    loss = torch.rand(20, generator=g) * 5
    idx = torch.arange(20) % K
    uw(loss, idx).backward()
    lbar = torch.stack([loss[idx == j].mean() for j in range(K)])
    s = uw.log_vars.detach()
    expect = 0.5 * (1 - torch.exp(-s) * lbar / K)
    assert torch.allclose(uw.log_vars.grad, expect, atol=1e-6)
    # and the loss value itself
    val = (0.5 * (torch.exp(-s) * lbar / K + s)).sum()
    assert uw(loss, idx).item() == pytest.approx(val.item(), rel=1e-6)


def test_uw_gradient_flows_to_per_sample_loss():
    uw = UncertaintyWeighting(2)
    loss = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    uw(loss, torch.tensor([0, 0, 1])).backward()
    # dL/dloss_i = 0.5 * exp(-s_j) / (K * n_j)
    assert torch.allclose(loss.grad, torch.tensor([0.125, 0.125, 0.25]))


def test_uw_minimiser_is_log_lbar_over_k():
    K = 3
    uw = UncertaintyWeighting(K)
    loss = torch.tensor([2.0, 6.0, 0.3, 9.0])
    idx = torch.tensor([0, 0, 1, 2])
    lbar = torch.tensor([4.0, 0.3, 9.0])
    opt = torch.optim.AdamW([uw.param_group(lr=0.1)])
    for _ in range(500):
        opt.zero_grad()
        uw(loss, idx).backward()
        opt.step()
    assert torch.allclose(uw.log_vars.detach(), torch.log(lbar / K), atol=1e-3)
    # exact minimiser: zero gradient there, and perturbing raises the loss
    with torch.no_grad():
        uw.log_vars.copy_(torch.log(lbar / K))
    uw.log_vars.grad = None
    best = uw(loss, idx)
    best.backward()
    assert torch.allclose(uw.log_vars.grad, torch.zeros(K), atol=1e-6)
    for d in (-0.1, 0.1):
        with torch.no_grad():
            uw.log_vars.add_(d)
            assert uw(loss, idx).item() > best.item()
            uw.log_vars.sub_(d)


def test_uw_empty_cluster_is_skipped():
    uw = UncertaintyWeighting(3)
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([0.5, 0.7, -0.2]))
    loss = torch.tensor([1.0, 5.0])
    idx = torch.tensor([0, 2])
    out = uw(loss, idx)
    s = uw.log_vars.detach()
    expect = 0.5 * (math.exp(-0.5) * 1.0 / 3 + 0.5) + 0.5 * (math.exp(0.2) * 5.0 / 3 - 0.2)
    assert out.item() == pytest.approx(expect, rel=1e-6)
    out.backward()
    assert uw.log_vars.grad[1].item() == 0.0
    assert s.shape == (3,)


def test_uw_param_group_and_validation():
    uw = UncertaintyWeighting(8)
    assert torch.equal(uw.log_vars.detach(), torch.zeros(8))
    pg = uw.param_group()
    assert pg["lr"] == 0.025 and pg["weight_decay"] == 0.0 and pg["params"][0] is uw.log_vars
    with pytest.raises(ValueError):
        uw(torch.ones(3), torch.tensor([0, 1, 8]))
    with pytest.raises(ValueError):
        uw(torch.ones(3), torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        UncertaintyWeighting(0)


@pytest.mark.parametrize("parts", [2, 4, 8])
def test_uw_micro_batch_shares_average_to_the_global_objective(parts):
    """A global batch cut into equal micro-batches (clusters straddling their borders): the mean of
    the shares, and of their gradients, is the global-batch UW objective; each s_j counts once."""
    gen = torch.Generator().manual_seed(0)
    loss = torch.rand(16, generator=gen, dtype=torch.float64) * 3
    idx = torch.tensor([0] * 6 + [1] * 2 + [2] * 5 + [3] * 3)  # unequal clusters, split anywhere
    uw = UncertaintyWeighting(4).double()
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([0.4, -0.3, 0.2, 0.9]))
    whole = uw(loss, idx)
    (grad_whole,) = torch.autograd.grad(whole, uw.log_vars)
    counts = torch.bincount(idx, minlength=4)
    shares = [uw(lc, ic, counts) for lc, ic in zip(loss.chunk(parts), idx.chunk(parts))]
    mean = torch.stack(shares).mean()
    (grad_parts,) = torch.autograd.grad(mean, uw.log_vars)
    assert mean.item() == pytest.approx(whole.item(), rel=1e-12)
    assert torch.allclose(grad_parts, grad_whole, atol=1e-12)
    with pytest.raises(ValueError, match="counts"):  # a micro-batch cannot hold more than the global batch
        uw(loss[:4], idx[:4], torch.tensor([1, 2, 5, 3]))
