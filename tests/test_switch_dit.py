"""Switch-DiT learned routing (docs/routing.md): init equals DiT, exact parameter overhead, the
diffusion-prior loss (Hungarian slot matching, JS divergence), expert usage, config/objective wiring."""
import itertools

import pytest
import torch

from trainers.config import RunConfig
from trainers.models import build_model, forward_macs
from trainers.models.embeddings import TimestepEmbedder
from trainers.models.switch_routing import (
    SwitchRouter,
    js_divergence,
    match_slots,
    slot_orders,
    switch_parameter_count,
    switch_prior_table,
)
from trainers.routing.spec import RoutingSpec

TINY = dict(input_size=16, in_channels=4, num_classes=10)
IMAGENET = dict(input_size=32, in_channels=4, num_classes=1000)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def tiny(routing=None, seed=0, **kw):
    torch.manual_seed(seed)
    return build_model("DiT-T/2", **{**TINY, **kw}, routing=routing)


def randomize(model, seed=1, std=0.05, experts=False):
    """Non-zero adaLN / final layers (and experts when asked) so outputs are non-trivial."""
    gen = torch.Generator().manual_seed(seed)
    layers = [b.adaLN_modulation[-1] for b in model.blocks]
    layers += [model.final_layer.adaLN_modulation[-1], model.final_layer.linear]
    if experts:
        layers += [e for r in model.router.routers for e in r.experts]
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * std)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * std)
    return model


def inputs(n=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 4, 16, 16, generator=gen), torch.randint(0, 1000, (n,), generator=gen),
            torch.randint(0, 10, (n,), generator=gen))


# ---------------------------------------------------------------- model


def test_equals_plain_dit_at_init():
    plain = randomize(tiny())
    switch = tiny(RoutingSpec(kind="learned"), seed=5)
    missing, unexpected = switch.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("router.") for k in missing)
    x, t, y = inputs()
    for mode in (False, True):
        plain.train(mode), switch.train(mode)
        torch.manual_seed(3)
        ref = plain(x, t, y)
        torch.manual_seed(3)
        out = switch(x, t, y)
        assert ref.abs().mean() > 1e-3
        assert torch.equal(out, ref)
    # the experts are what makes it differ
    randomize(switch, experts=True).eval()
    plain.eval()
    assert not torch.allclose(switch(x, t, y), plain(x, t, y))


def test_parameter_overhead_matches_formula():
    with torch.device("meta"):
        for size, (depth, d) in {"S": (12, 384), "B": (12, 768)}.items():
            plain = build_model(f"DiT-{size}/2", **IMAGENET)
            switch = build_model(f"DiT-{size}/2", **IMAGENET, routing="learned")
            extra = depth * (3 * (d * d + d) + d * 3 + 3)
            assert n_params(switch) - n_params(plain) == extra == switch_parameter_count(depth, d, 3)
        assert n_params(switch) - n_params(plain) == 21_288_996  # B: the paper's +21.3M
        plain = build_model("DiT-S/2", **IMAGENET)
        switch = build_model("DiT-S/2", **IMAGENET, routing=RoutingSpec(kind="learned"))
        assert n_params(plain) == 32_963_360 and n_params(switch) == 32_963_360 + 5_336_100  # +5.3M
        four = build_model("DiT-S/2", **IMAGENET, routing=RoutingSpec(kind="learned", experts=4, top_k=1))
        assert n_params(four) - n_params(plain) == switch_parameter_count(12, 384, 4)
        assert switch.routing_masks is None and switch.routed
        # experts run on every token (k of them), the gate once per sample
        assert forward_macs(switch) - forward_macs(plain) == 12 * (2 * 256 * 384 * 384 + 384 * 3)


def test_mask_formula_topk_without_renormalisation():
    model = randomize(tiny("learned"), experts=True)
    router, r0 = model.router, model.router.routers[0]
    t = torch.tensor([3, 900])
    state = router.begin(t, model.t_embedder(t))
    probs, chosen = state["probs"][0], state["chosen"][0]
    assert torch.allclose(probs.sum(-1), torch.ones(2))
    z = torch.randn(2, 64, 128)
    m = router.block_mask(0, z, state)
    for n in range(2):
        expected = torch.ones(64, 128)
        for j in chosen[n].tolist():  # the top-k gate values as they are (they sum to < 1)
            expected = expected + probs[n, j] * r0.experts[j](z[n])
        assert torch.allclose(m[n], expected, atol=1e-5)
    assert (probs.gather(1, chosen).sum(-1) < 1).all()


def test_expert_usage_table():
    model = tiny("learned")
    usage = model.expert_usage()
    assert usage.shape == (1000, 3)
    assert torch.allclose(usage.sum(1), torch.full((1000,), 2.0))
    for b in range(model.depth):
        table = model.expert_usage(block=b)
        assert table.shape == (1000, 3) and torch.equal(table.sum(1), torch.full((1000,), 2.0))
        assert set(table.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError):
        tiny("dtr").expert_usage()


# ---------------------------------------------------------------- the diffusion prior


def test_prior_table_is_dtr_over_expert_slots():
    table = switch_prior_table(1000, depth=4, experts=3, top_k=2)
    assert table.shape == (1000, 12)
    assert torch.equal(table.sum(1), torch.full((1000,), 8.0))  # window width depth * k
    assert torch.equal(table[0, :8], torch.ones(8)) and torch.equal(table[999, 4:], torch.ones(8))
    starts = table.argmax(1)
    assert (starts[1:] >= starts[:-1]).all()
    for depth in range(1, 30):  # int(C * k / E) never loses a unit
        assert int(switch_prior_table(10, depth, 3, 2)[0].sum()) == 2 * depth


def test_hungarian_matching_small_cases():
    gen = torch.Generator().manual_seed(0)
    prior = switch_prior_table(40, depth=2, experts=3, top_k=2)  # (40, 6)
    true = torch.randperm(6, generator=gen)
    indicator = prior[:, true]  # model slot i behaves exactly like prior slot true[i]
    perm = match_slots(indicator, prior)
    assert torch.equal(prior[:, perm], indicator)
    assert sorted(perm.tolist()) == list(range(6))
    # random tables: the assignment's cost is the brute-force minimum
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        a = (torch.rand(30, 5, generator=g) < 0.5).float()
        b = (torch.rand(30, 5, generator=g) < 0.5).float()
        cost = lambda p: sum((a[:, i] - b[:, p[i]]).abs().sum().item() for i in range(5))  # noqa: E731
        best = min(cost(p) for p in itertools.permutations(range(5)))
        assert cost(match_slots(a, b).tolist()) == best


def test_js_divergence():
    p = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    q = torch.tensor([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]])
    js = js_divergence(p, q)
    assert js[1].abs() < 1e-6 and torch.allclose(js, js_divergence(q, p))
    assert 0 < js[0] < torch.log(torch.tensor(2.0))
    disjoint = js_divergence(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    assert torch.allclose(disjoint, torch.log(torch.tensor([2.0])), atol=1e-4)


def test_prior_loss_definition_and_finite():
    model = tiny(RoutingSpec(kind="learned", prior_weight=0.5)).train()
    x, t, y = inputs()
    model(x, t, y)
    assert torch.isfinite(model.prior_loss) and model.prior_loss > 0
    assert torch.allclose(model.aux_loss, 0.5 * model.prior_loss)
    assert model.aux_loss.requires_grad
    # recompute by hand: P = concat(gates) / depth, target = matched prior row at t, normalised
    router = model.router
    with torch.no_grad():
        emb = model.t_embedder(t)
        p = torch.cat([r.probs(emb) for r in router.routers], -1) / model.depth
        ind = router.indicator_table(model.t_embedder).permute(1, 0, 2).reshape(1000, -1)
        order = slot_orders(router.seed, 0, ind.shape[1])  # the first draw of the slot orders
        target = router.prior_table[:, match_slots(ind, router.prior_table, order)][t]
        target = target / target.sum(-1, keepdim=True)
        m = (p + target) / 2
        kl = lambda a: (a * ((a + 1e-6).log() - (m + 1e-6).log())).sum(-1)  # noqa: E731
        assert torch.allclose(model.prior_loss, (0.5 * kl(p) + 0.5 * kl(target)).mean(), atol=1e-6)
    model.eval()
    model(x, t, y)
    assert model.aux_loss is None and model.prior_loss is None  # not computed in eval mode


def grid_prior(model):
    t = torch.linspace(0, 999, 100).long()
    with torch.no_grad():
        state = model.router.begin(t, model.t_embedder(t))
        return model.router.prior_loss(t, state["probs"], model.t_embedder).item()


def test_prior_loss_decreases_with_adam():
    model = tiny("learned").train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    before = grid_prior(model)
    for _ in range(30):
        x = torch.randn(8, 4, 16, 16, generator=gen)
        t = torch.randint(0, 1000, (8,), generator=gen)
        y = torch.randint(0, 10, (8,), generator=gen)
        loss = (model(x, t, y)[:, :4] - x).square().mean() + model.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = grid_prior(model)
    assert after < 0.6 * before, (before, after)


# ---------------------------------------------------------------- spec, config, objective


def test_spec_and_config_fields():
    spec = RoutingSpec(kind="learned", experts=4, top_k=3, prior_weight=0.1)
    assert spec.learned and spec.mask_table(1000, 16, 4) is None
    assert RoutingSpec.from_dict(spec.to_dict()) == spec
    assert RoutingSpec(kind="learned_window").mask_table(1000, 16, 4) is None
    for bad, word in [(dict(experts=0), "experts"), (dict(top_k=4), "top_k"), (dict(top_k=0), "top_k"),
                      (dict(prior_weight=-1.0), "prior_weight")]:
        with pytest.raises(ValueError, match=word):
            RoutingSpec(kind="learned", **bad)
    cfg = RunConfig(routing="learned", experts=4, top_k=1, prior_weight=0.3)
    assert cfg.routing_spec() == RoutingSpec(kind="learned", experts=4, top_k=1, prior_weight=0.3)
    assert cfg.label() == "Switch-DiT"
    model = build_model("DiT-T/2", **TINY, routing=cfg.routing_spec())
    assert model.router.num_experts == 4 and model.router.top_k == 1 and model.router.prior_weight == 0.3


def test_objective_adds_prior_loss():
    from trainers.diffusion.gaussian import GaussianDiffusion
    from trainers.training.objective import DiffusionObjective

    cfg = RunConfig(routing="learned", prior_weight=2.0, model="DiT-T/2", image_size=16)
    diffusion = GaussianDiffusion("linear", 1000, learn_sigma=True)
    model = tiny(cfg.routing_spec()).train()
    objective = DiffusionObjective(cfg, model, diffusion)
    x, t, y = inputs()
    loss, logs = objective(x, y, t, torch.randn_like(x), torch.zeros(4, dtype=torch.long))
    assert set(logs) == {"mse", "vb", "prior", "aux_loss"}  # aux_loss: the weighted prior term
    assert torch.allclose(loss, logs["mse"] + logs["vb"] + 2.0 * logs["prior"], atol=1e-5)
    loss.backward()
    assert model.router.routers[0].gate[-1].weight.grad.abs().sum() > 0
    # a plain model logs no prior
    plain_obj = DiffusionObjective(cfg.replace(routing="none"), tiny(), diffusion)
    assert "prior" not in plain_obj(x, y, t, torch.randn_like(x), torch.zeros(4, dtype=torch.long))[1]


def tied_router(seed=0):
    """E = 2, depth 2, k = 1 over T = 10: both blocks pick expert 0 at every t (constant gates of
    different sharpness), so model slots 0/2 and 1/3 are identical columns: four equally cheap
    matchings, whose prior losses differ."""
    router = SwitchRouter(depth=2, hidden_size=8, num_timesteps=10, experts=2, top_k=1, seed=seed)
    router.initialize()
    with torch.no_grad():
        for r, bias in zip(router.routers, (2.2, 0.4)):
            r.gate[-1].weight.zero_()
            r.gate[-1].bias.copy_(torch.tensor([bias, 0.0]))
    torch.manual_seed(0)
    return router, TimestepEmbedder(8)


def tied_loss(router, emb, order=None):
    t = torch.arange(10)
    with torch.no_grad():
        probs = [r.probs(emb(t)) for r in router.routers]
        if order is None:
            return router.prior_loss(t, probs, emb).item()
        p = torch.cat(probs, -1) / router.depth
        target = router.matched_prior(emb, order)[t]
        return js_divergence(p, target / target.sum(-1, keepdim=True)).mean().item()


def test_slot_orders_break_ties_differently_across_steps_and_resume():
    router, emb = tied_router()
    perms, saved = [], None
    for step in range(12):
        if step == 5:
            saved = {k: v.clone() for k, v in router.state_dict().items()}
        tied_loss(router, emb)
        perms.append(tuple(router.last_perm.tolist()))
    assert len(set(perms)) > 1  # ties go different ways on different steps
    assert int(router.prior_draws) == 12 and "prior_draws" in router.state_dict()
    resumed, emb2 = tied_router()
    resumed.load_state_dict(saved)  # a checkpoint taken after 5 draws continues the same stream
    again = []
    for _ in range(7):
        tied_loss(resumed, emb2)
        again.append(tuple(resumed.last_perm.tolist()))
    assert again == perms[5:]
    other, emb3 = tied_router(seed=1)
    other_perms = []
    for _ in range(12):
        tied_loss(other, emb3)
        other_perms.append(tuple(other.last_perm.tolist()))
    assert other_perms != perms  # another seed, another stream


def test_prior_loss_with_random_orders_matches_the_exact_average():
    """The expected prior loss over the random slot orders equals the exact average over all
    (model order, prior order) pairs, enumerated (4! x 4!), within Monte-Carlo error."""
    router, emb = tied_router()
    orders = list(itertools.permutations(range(4)))
    exact_values = torch.tensor([tied_loss(router, emb, (list(a), list(b))) for a in orders for b in orders])
    assert exact_values.max() - exact_values.min() > 1e-3  # the tie-break matters for the loss
    draws = torch.tensor([tied_loss(router, emb) for _ in range(400)])
    error = draws.std() / len(draws) ** 0.5
    assert abs(draws.mean() - exact_values.mean()) < 4 * error + 1e-9
