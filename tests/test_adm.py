"""ADM UNet with DTR (docs/routing.md): registry, exact parameter counts (routing adds none),
zero-initialised output, mask after GroupNorm with one table per width, CFG null class."""
import pytest
import torch

from trainers.models import ADMUNet, build_model
from trainers.models.adm import AttentionBlock, ResBlock
from trainers.routing.masks import dtr_mask
from trainers.routing.spec import RoutingSpec

GREY = dict(input_size=32, in_channels=1, num_classes=10)
IMAGENET64 = dict(input_size=64, in_channels=3, num_classes=1000)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def tiny(routing=None, seed=0, **kw):
    torch.manual_seed(seed)
    return build_model("ADM-T", **{**GREY, **kw}, routing=routing)


def randomize_zero_init(model, seed=1, std=0.05):
    """Non-zero weights for every all-zero parameter (output convs, attention projections)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def inputs(n=3, seed=0, t=None):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 32, 32, generator=gen)
    t = torch.randint(0, 1000, (n,), generator=gen) if t is None else torch.full((n,), t)
    return x, t, torch.randint(0, 10, (n,), generator=gen)


def routed_copy(plain, spec):
    routed = build_model("ADM-T", **GREY, routing=spec)
    missing, unexpected = routed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("routing_tables.") for k in missing)
    return routed.eval()


def test_registry_and_counts():
    with torch.device("meta"):
        inet = build_model("ADM-ImageNet64", **IMAGENET64)
        ffhq = build_model("ADM-FFHQ64", input_size=64, in_channels=3, num_classes=1)
        for kind in ("dtr", "random"):
            assert n_params(build_model("ADM-ImageNet64", **IMAGENET64, routing=kind)) == n_params(inet)
            assert n_params(build_model("ADM-FFHQ64", input_size=64, in_channels=3, num_classes=1,
                                        routing=RoutingSpec(kind=kind))) == n_params(ffhq)
    assert isinstance(inet, ADMUNet)
    assert n_params(inet) == 295_905_222  # the ADM paper's ~296M ImageNet 64 model (+ a CFG null class row)
    assert n_params(ffhq) == 131_229_830
    assert inet.out_channels == 6 and inet.model_channels == 192 and inet.num_classes == 1000
    assert n_params(tiny(RoutingSpec(kind="dtr"))) == n_params(tiny())
    with pytest.raises(ValueError, match="ADM-T"):
        build_model("ADM-XXL", **GREY)
    with pytest.raises(ValueError, match="DiT only"):
        tiny("learned")


def test_output_shape_and_zero_init():
    model = tiny()
    x, t, y = inputs()
    out = model(x, t, y)
    assert out.shape == (3, 2, 32, 32) and torch.count_nonzero(out) == 0
    assert tiny(learn_sigma=False)(x, t, y).shape == (3, 1, 32, 32)
    assert torch.count_nonzero(tiny(RoutingSpec(kind="dtr", beta=0.5))(x, t, y)) == 0
    rgb = tiny(in_channels=3, num_classes=1)
    assert rgb(torch.randn(2, 3, 32, 32), torch.tensor([1, 2])).shape == (2, 6, 32, 32)
    assert rgb.label_emb is None and rgb.class_dropout_prob == 0.0


def test_beta_one_equals_plain_model():
    plain = randomize_zero_init(tiny()).eval()
    routed = routed_copy(plain, RoutingSpec(kind="dtr", beta=1.0))
    x, t, y = inputs()
    ref = plain(x, t, y)
    assert ref.abs().mean() > 1e-3
    assert torch.equal(routed(x, t, y), ref)


def test_mask_changes_output_and_is_indexed_by_t():
    plain = randomize_zero_init(tiny()).eval()
    routed = routed_copy(plain, RoutingSpec(kind="dtr", beta=0.5))
    x, t, y = inputs(t=999)
    ref = plain(x, t, y)
    assert (routed(x, t, y) - ref).abs().mean() > 1e-3 * ref.abs().mean()
    # DTR row 0 starts at channel 0: the routed model differs at t=0 too, but rows differ by t
    with torch.no_grad():
        for c in routed.routing_tables.widths:
            table = routed.routing_tables.table(c)
            table[:, 7] = 1.0  # row 7 all ones in every table: plain model at t = 7 only
    x, t7, y = inputs(t=7)
    assert torch.equal(routed(x, t7, y), plain(x, t7, y))
    assert not torch.allclose(routed(x, t7 + 1, y), plain(x, t7 + 1, y))


def test_tables_per_width_and_rtr_per_block():
    model = tiny(RoutingSpec(kind="dtr"))
    blocks = model.routed_blocks()
    assert sum(isinstance(b, ResBlock) for b in blocks) == 10
    assert sum(isinstance(b, AttentionBlock) for b in blocks) == 4
    widths = sorted({b.route[0] for b in blocks})
    assert widths == model.routing_tables.widths == [32, 64, 96, 128]
    for c in widths:
        assert torch.equal(model.routing_tables.table(c), dtr_mask(1000, c, 0.8, 4.0).unsqueeze(0))
    assert torch.equal(model.routing_masks, model.routing_tables.table(32))  # first block's table, for the image
    assert tiny().routing_masks is None
    rtr = tiny(RoutingSpec(kind="random", seed=3))
    for c in widths:
        table = rtr.routing_tables.table(c)
        users = [b for b in rtr.routed_blocks() if b.route[0] == c]
        assert table.shape == (len(users), 1000, c)  # one table per block of that width
        assert torch.equal(table.sum(2), torch.full(table.shape[:2], float(int(0.8 * c))))
        if len(users) > 1:
            assert not torch.equal(table[0], table[1])
    state = rtr.state_dict()
    assert {f"routing_tables.c{c}" for c in widths} <= set(state)
    other = tiny(RoutingSpec(kind="random", seed=4))
    other.load_state_dict(state)
    assert torch.equal(other.routing_tables.table(64), rtr.routing_tables.table(64))


def test_mask_acts_after_groupnorm():
    torch.manual_seed(0)
    block = randomize_zero_init(ResBlock(32, 16, 0.0, out_channels=64)).eval()
    x, emb = torch.randn(2, 32, 8, 8), torch.randn(2, 16)
    block.route = (32, 0)
    m = (torch.rand(1, 2, 32) < 0.6).float()
    out = block(x, emb, {32: m})
    h = block.in_norm(x) * m[0][:, :, None, None]  # the norm sees all of x; its output is masked
    h = block.in_conv(torch.nn.functional.silu(h))
    scale, shift = block.emb_layers(emb)[..., None, None].chunk(2, dim=1)
    expected = block.skip(x) + block.out_rest(block.out_norm(h) * (1 + scale) + shift)
    assert torch.allclose(out, expected, atol=1e-6)
    attn = randomize_zero_init(AttentionBlock(32, num_head_channels=16)).eval()
    attn.route = (32, 0)
    masked_norm = attn.norm(x.reshape(2, 32, -1)) * m[0][:, :, None]
    ref = AttentionBlock(32, num_head_channels=16)
    ref.load_state_dict(attn.state_dict())
    ref.norm = torch.nn.Identity()
    expected = x + (ref(masked_norm.reshape(2, 32, 8, 8)) - masked_norm.reshape(2, 32, 8, 8))
    assert torch.allclose(attn(x, None, {32: m}), expected, atol=1e-5)


def test_cfg_null_class_and_backward():
    model = randomize_zero_init(tiny(RoutingSpec(kind="dtr")))
    assert model.class_dropout_prob == 0.1 and model.label_emb.embedding_table.num_embeddings == 11
    x, t, y = inputs()
    model.eval()
    null = model(x, t, torch.full((3,), 10))
    assert torch.equal(model(x, t, None), null) and not torch.allclose(model(x, t, y), null)
    model.train()
    assert torch.equal(model(x, t, y, force_drop_ids=torch.ones(3, dtype=torch.long)), null)
    model(x, t, y).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_trainer_builds_adm():
    from trainers.config import RunConfig
    from trainers.training.cli import build_parser, config_from_args
    from trainers.training.loop import model_for

    cfg = config_from_args(build_parser().parse_args(["--model", "ADM-T", "--routing", "dtr"]))
    model = model_for(cfg)
    assert isinstance(model, ADMUNet) and model.in_channels == 1 and model.num_classes == 10
    assert model.routed and model.input_size == cfg.image_size == 32
    assert isinstance(cfg, RunConfig)
