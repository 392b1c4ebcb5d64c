"""DiT model package: registry, exact parameter counts, GFLOPs, init, routing and CFG label dropout."""
import pytest
import torch

from trainers.models import DiT_models, build_model, forward_macs, measured_macs
from trainers.models.embeddings import LabelEmbedder, sincos_2d, timestep_embedding
from trainers.routing.spec import RoutingSpec

IMAGENET = dict(input_size=32, in_channels=4, num_classes=1000)
TINY = dict(input_size=16, in_channels=4, num_classes=10)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def meta_model(name, **kw):
    with torch.device("meta"):
        return build_model(name, **{**IMAGENET, **kw})


def tiny(name="DiT-T/2", seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(name, **{**TINY, **kw})


def randomize_zero_init(model, seed=1, std=0.05):
    """Give the adaLN-Zero and final layers non-zero weights so outputs are non-trivial."""
    gen = torch.Generator().manual_seed(seed)
    layers = [b.adaLN_modulation[-1] for b in model.blocks]
    layers += [model.final_layer.adaLN_modulation[-1], model.final_layer.linear]
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * std)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * std)
    return model


def inputs(n=3, seed=0, t=None):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, 16, 16, generator=gen)
    t = torch.randint(0, 1000, (n,), generator=gen) if t is None else torch.full((n,), t)
    y = torch.randint(0, 10, (n,), generator=gen)
    return x, t, y


# ---------------------------------------------------------------- registry, counts, cost


def test_registry_and_unknown_name():
    for size in ("S", "B", "L", "XL"):
        for p in (2, 4, 8):
            assert f"DiT-{size}/{p}" in DiT_models
    assert "DiT-T/2" in DiT_models and "DiT-T/4" in DiT_models
    with pytest.raises(ValueError, match="DiT-XL/2"):
        build_model("DiT-XXL/2", **IMAGENET)


def test_config_knows_exactly_the_registered_models():
    """RunConfig validates model names and input sizes from trainers/config_checks.py (below the
    model package): the same names as the registry, ADM's levels as its channel multipliers."""
    from trainers.config_checks import ADM_LEVELS, model_names
    from trainers.models import ADM_CONFIGS, MODEL_NAMES

    assert sorted(model_names()) == sorted(MODEL_NAMES)
    assert {name: len(cfg["channel_mult"]) for name, cfg in ADM_CONFIGS.items()} == ADM_LEVELS


@pytest.mark.parametrize(
    "name,count",
    [("DiT-S/2", 32_963_360), ("DiT-B/2", 130_512_416), ("DiT-L/2", 458_102_816), ("DiT-XL/2", 675_129_632)],
)
def test_published_param_counts(name, count):
    model = meta_model(name)
    assert n_params(model) == count
    assert model.pos_embed.requires_grad is False
    assert model.out_channels == 8 and model.num_classes == 1000


@pytest.mark.parametrize("kind", ["dtr", "random"])
def test_routed_param_count_equals_plain(kind):
    plain = meta_model("DiT-S/2")
    routed = meta_model("DiT-S/2", routing=RoutingSpec(kind=kind))
    assert n_params(routed) == n_params(plain) == 32_963_360
    assert "routing_masks" in routed.state_dict() and "routing_masks" not in plain.state_dict()
    rows = plain.depth if kind == "random" else 1
    assert tuple(routed.routing_masks.shape) == (rows, 1000, 384)
    assert meta_model("DiT-S/2", routing=RoutingSpec(kind="none")).routing_masks is None


@pytest.mark.parametrize(
    "name,gflops",
    [
        ("DiT-S/2", 6.06), ("DiT-B/2", 23.01), ("DiT-L/2", 80.7), ("DiT-XL/2", 118.6),
        ("DiT-S/4", 1.41), ("DiT-B/4", 5.57), ("DiT-L/4", 19.7), ("DiT-XL/4", 29.0),
        ("DiT-S/8", 0.36), ("DiT-B/8", 1.42), ("DiT-L/8", 5.01), ("DiT-XL/8", 7.39),
    ],
)
def test_published_gflops(name, gflops):
    assert forward_macs(meta_model(name)) / 1e9 == pytest.approx(gflops, rel=0.01)


def test_analytic_macs_match_flop_counter():
    assert measured_macs(meta_model("DiT-S/2", routing="dtr")) == forward_macs(meta_model("DiT-S/2"))
    model = tiny()
    assert measured_macs(model) == forward_macs(model)


# ---------------------------------------------------------------- embeddings and init


def test_embeddings():
    emb = timestep_embedding(torch.tensor([0, 999]), 256)
    assert emb.shape == (2, 256)
    assert torch.equal(emb[0, :128], torch.ones(128)) and torch.equal(emb[0, 128:], torch.zeros(128))
    pos = sincos_2d(64, 4)
    assert pos.shape == (16, 64) and pos.dtype == torch.float32
    # token 1 is (row 0, col 1): the column half varies, the row half equals token 0's
    assert torch.equal(pos[1, 32:], pos[0, 32:]) and not torch.equal(pos[1, :32], pos[0, :32])
    assert torch.equal(pos[4, :32], pos[0, :32])
    model = tiny()
    assert torch.equal(model.pos_embed[0], sincos_2d(128, 8))


def test_output_shape_and_zero_init():
    model = tiny()
    x, t, y = inputs()
    out = model(x, t, y)
    assert out.shape == (3, 8, 16, 16)
    assert torch.count_nonzero(out) == 0
    assert tiny(learn_sigma=False)(x, t, y).shape == (3, 4, 16, 16)
    assert tiny("DiT-T/4")(x, t, y).shape == (3, 8, 16, 16)


def test_blocks_are_identity_at_init():
    model = tiny(routing=RoutingSpec(kind="dtr", beta=0.5))
    x = torch.randn(2, 64, 128)
    c = torch.randn(2, 128)
    masks = model.block_masks(torch.tensor([10, 900]))
    for block, m in zip(model.blocks, masks):
        assert torch.equal(block(x, c), x)
        assert torch.equal(block(x, c, m), x)


def test_backward_leaves_pos_embed_frozen():
    model = randomize_zero_init(tiny())
    x, t, y = inputs()
    model(x, t, y).square().mean().backward()
    assert model.pos_embed.grad is None
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- routing


def routed_copy(plain, table_or_spec):
    routed = build_model("DiT-T/2", **TINY, routing=table_or_spec)
    routed.load_state_dict(plain.state_dict(), strict=False)
    return routed.eval()


def test_beta_one_equals_plain_model():
    plain = randomize_zero_init(tiny()).eval()
    routed = routed_copy(plain, RoutingSpec(kind="dtr", beta=1.0))
    assert torch.count_nonzero(routed.routing_masks == 0) == 0
    x, t, y = inputs()
    ref = plain(x, t, y)
    assert ref.abs().mean() > 1e-3
    assert torch.equal(routed(x, t, y), ref)


def test_mask_changes_output_and_is_indexed_by_t():
    plain = randomize_zero_init(tiny()).eval()
    routed = routed_copy(plain, RoutingSpec(kind="dtr", beta=0.5))
    x, t, y = inputs(t=999)
    ref = plain(x, t, y)
    assert (routed(x, t, y) - ref).abs().mean() > 1e-3 * ref.abs().mean() + 1e-4
    # a table whose row 7 is all ones reproduces the plain model exactly at t = 7 only
    table = torch.zeros(1, 1000, 128)
    table[0, :, ::2] = 1.0
    table[0, 7] = 1.0
    routed = routed_copy(plain, table)
    x, t7, y = inputs(t=7)
    assert torch.equal(routed(x, t7, y), plain(x, t7, y))
    assert not torch.allclose(routed(x, t7 + 1, y), plain(x, t7 + 1, y))


def test_block_formula_out_is_x_plus_block_of_masked_x():
    torch.manual_seed(0)
    block = randomize_zero_init(tiny()).blocks[1]
    x, c = torch.randn(2, 64, 128), torch.randn(2, 128)
    m = (torch.rand(2, 1, 128) < 0.7).float()
    expected = x + (block(m * x, c) - m * x)
    assert torch.allclose(block(x, c, m), expected, atol=1e-5)


def test_per_block_tables():
    plain = randomize_zero_init(tiny()).eval()
    shared = RoutingSpec(kind="dtr", beta=0.6).mask_table(1000, 128, 4)
    per_block = shared.expand(4, -1, -1).clone()
    x, t, y = inputs()
    a = routed_copy(plain, shared)(x, t, y)
    assert torch.allclose(routed_copy(plain, per_block)(x, t, y), a, atol=1e-6)
    per_block[2] = 1.0  # only block 2 changes
    assert not torch.allclose(routed_copy(plain, per_block)(x, t, y), a)
    with pytest.raises(ValueError):
        build_model("DiT-T/2", **TINY, routing=torch.ones(3, 1000, 128))


def test_random_masks_survive_state_dict():
    src = randomize_zero_init(tiny(routing=RoutingSpec(kind="random", beta=0.8, seed=0))).eval()
    dst = tiny(routing=RoutingSpec(kind="random", beta=0.8, seed=1)).eval()
    assert not torch.equal(src.routing_masks, dst.routing_masks)
    dst.load_state_dict(src.state_dict())
    assert torch.equal(src.routing_masks, dst.routing_masks)
    x, t, y = inputs()
    assert torch.equal(src(x, t, y), dst(x, t, y))


# ---------------------------------------------------------------- conditioning


def test_unconditional_model():
    model = randomize_zero_init(tiny(num_classes=1)).eval()
    assert model.y_embedder is None
    assert n_params(tiny()) - n_params(model) == 11 * 128
    x, t, _ = inputs()
    out = model(x, t, None)
    assert out.shape == (3, 8, 16, 16) and torch.equal(model(x, t, torch.zeros(3, dtype=torch.long)), out)
    with torch.device("meta"):
        assert n_params(build_model("DiT-S/2", input_size=32, in_channels=4, num_classes=1)) == 32_963_360 - 1001 * 384


def test_label_dropout_for_cfg():
    emb = LabelEmbedder(10, 16, dropout_prob=0.1)
    assert emb.embedding_table.num_embeddings == 11
    labels = torch.randint(0, 10, (20000,))
    null = emb.embedding_table.weight[10]
    emb.eval()
    assert torch.equal(emb(labels), emb.embedding_table(labels))
    emb.train()
    torch.manual_seed(0)
    out = emb(labels)
    assert out.shape == (20000, 16)
    dropped = (out == null).all(dim=1).float().mean().item()
    assert 0.09 < dropped < 0.11
    force = torch.zeros(20000, dtype=torch.long)
    force[:5] = 1
    for mode in (True, False):
        emb.train(mode)
        out = emb(labels, force_drop_ids=force)
        assert (out[:5] == null).all() and torch.equal(out[5:], emb.embedding_table(labels[5:]))

    model = randomize_zero_init(tiny())
    assert model.class_dropout_prob == 0.1 and model.y_embedder.embedding_table.num_embeddings == 11
    x, t, y = inputs()
    model.eval()
    null_out = model(x, t, torch.full((3,), 10))
    assert torch.equal(model(x, t, None), null_out)
    assert not torch.allclose(model(x, t, y), null_out)
    model.train()
    assert torch.equal(model(x, t, y, force_drop_ids=torch.ones(3, dtype=torch.long)), null_out)
