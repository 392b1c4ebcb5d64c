"""Learned sliding window (routing kind "learned_window"): DTR at init (in training too), monotone
start curve, exact 0/1 windows of width W with soft-window gradients (straight-through)."""
import pytest
import torch

from trainers.models import build_model
from trainers.models.learned_window import LearnedWindow
from trainers.routing.masks import dtr_mask, dtr_window_starts, window_width
from trainers.routing.spec import RoutingSpec

TINY = dict(input_size=16, in_channels=4, num_classes=10)


def scramble(window, seed=0, std=1.0):
    with torch.no_grad():
        window.theta.copy_(torch.randn(window.theta.shape, generator=torch.Generator().manual_seed(seed)) * std)
    return window


@pytest.mark.parametrize("channels,beta,alpha", [(384, 0.8, 4.0), (128, 0.8, 4.0), (128, 0.5, 2.0)])
def test_init_hard_window_equals_dtr(channels, beta, alpha):
    window = LearnedWindow(1000, channels, beta, alpha).eval()
    assert window.theta.numel() == 999  # one increment per timestep: the default
    assert torch.equal(window.mask_table(), dtr_mask(1000, channels, beta, alpha))
    t = torch.tensor([0, 284, 500, 999])
    assert torch.equal(window.rows(t).float(), dtr_mask(1000, channels, beta, alpha)[t])


@pytest.mark.parametrize("channels,beta", [(384, 0.8), (128, 0.8), (128, 0.5)])
def test_training_mask_at_init_is_dtr_exactly(channels, beta):
    """The mask the model trains with at initialisation is DTR's table, edge channels included
    (a soft window at temperature 1 would give them 0.62 / 0.38); the gradient still reaches theta."""
    model = build_model("DiT-T/2", input_size=16, in_channels=4, num_classes=10,
                        routing=RoutingSpec(kind="learned_window", beta=beta)).train()
    window = LearnedWindow(1000, channels, beta, 4.0).train()
    for win, c in ((window, channels), (model.router, 128)):
        t = torch.arange(1000)
        rows = win.rows(t)
        assert torch.equal(rows.detach().float(), dtr_mask(1000, c, beta, 4.0))
    (window.rows(t) * torch.linspace(-1, 1, channels)).sum().backward()
    assert window.theta.grad.abs().sum() > 0


def test_knots_lie_on_the_dtr_curve():
    window = LearnedWindow(1000, 384, 0.8, 4.0, knots=8)
    assert window.theta.numel() == 8 and len(window.knot_timesteps) == 9
    dtr = torch.from_numpy(dtr_window_starts(1000, 384, 0.8, 4.0))
    knots = torch.from_numpy(window.knot_timesteps)
    assert torch.equal(window.hard_starts()[knots], dtr[knots])
    # between knots: linear interpolation of the convex curve lies on or above it
    assert (window.starts() >= dtr.double() - 0.5).all()


@pytest.mark.parametrize("knots", [None, 8])
def test_starts_monotone_with_fixed_ends(knots):
    window = scramble(LearnedWindow(1000, 128, 0.8, 4.0, knots=knots), std=3.0)
    s = window.starts()
    assert (s[1:] >= s[:-1]).all()
    shift = 128 - window_width(128, 0.8)
    assert s[0].item() == 0.0 and abs(s[-1].item() - shift) < 1e-9
    assert (s >= 0).all() and (s <= shift).all()


def test_soft_window_is_differentiable():
    window = scramble(LearnedWindow(1000, 64, 0.75, 4.0, knots=16, temperature=0.5, straight_through=False),
                      std=0.3).train()
    t = torch.tensor([10, 400, 700, 999])
    rows = window.rows(t)
    assert rows.requires_grad and ((rows > 0) & (rows < 1)).any()
    (rows * torch.linspace(-1, 1, 64)).sum().backward()
    grad = window.theta.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # straight-through: the hard window forward, the soft window's gradient
    st = scramble(LearnedWindow(1000, 64, 0.75, 4.0, knots=16, straight_through=True), std=0.3).train()
    rows = st.rows(t)
    assert torch.equal(rows.detach(), st.eval().rows(t))
    (rows * torch.linspace(-1, 1, 64)).sum().backward()
    assert st.theta.grad.abs().sum() > 0


def test_eval_mode_gives_exact_windows_of_width_w():
    window = scramble(LearnedWindow(1000, 128, 0.8, 4.0), std=2.0).eval()
    table = window.mask_table()
    width = window_width(128, 0.8)
    assert set(table.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(table.sum(1), torch.full((1000,), float(width)))
    starts = table.argmax(1)
    cols = torch.arange(128)
    contiguous = (cols >= starts[:, None]) & (cols < starts[:, None] + width)
    assert torch.equal(table.bool(), contiguous)
    assert torch.equal(starts, window.hard_starts())


def test_dit_with_learned_window():
    torch.manual_seed(0)
    model = build_model("DiT-T/2", **TINY, routing=RoutingSpec(kind="learned_window", beta=0.8))
    torch.manual_seed(0)
    dtr = build_model("DiT-T/2", **TINY, routing=RoutingSpec(kind="dtr", beta=0.8))
    plain_params = sum(p.numel() for p in dtr.parameters())
    assert sum(p.numel() for p in model.parameters()) == plain_params + 999
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-zero adaLN / final layers in both
        for a, b in zip(model.parameters(), dtr.parameters()):
            if a.shape == b.shape and a.abs().sum() == 0:
                noise = torch.randn(a.shape, generator=gen) * 0.05
                a.copy_(noise), b.copy_(noise)
    x = torch.randn(3, 4, 16, 16, generator=gen)
    t, y = torch.tensor([0, 500, 999]), torch.tensor([1, 2, 3])
    model.eval(), dtr.eval()
    assert torch.equal(model(x, t, y), dtr(x, t, y))  # hard window at init == DTR
    model.train()
    model(x, t, y).square().mean().backward()  # the diffusion loss reaches the start curve
    assert model.router.theta.grad.abs().sum() > 0
    assert model.aux_loss is None
