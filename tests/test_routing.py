"""Routing masks against the published reference values (docs/routing.md)."""
import json

import pytest
import torch

from trainers.diffusion.interval_clustering import (
    equal_width_clusters as equal_width_bounds,
)
from trainers.routing.masks import (
    cdtr_mask,
    dtr_mask,
    dtr_window_starts,
    ercdt_mask,
    random_mask,
)
from trainers.routing.spec import RoutingSpec

# (C, W, L, s_0, s_499, s_999, first t with s_t >= 1) for T=1000, beta=0.8, alpha=4
REFERENCE = {
    "DiT-S": (384, 307, 77, 0, 5, 77, 284),
    "DiT-B": (768, 614, 154, 0, 10, 154, 239),
    "DiT-L": (1024, 819, 205, 0, 13, 205, 223),
    "DiT-XL": (1152, 921, 231, 0, 14, 231, 216),
}


@pytest.mark.parametrize("model", sorted(REFERENCE))
def test_dtr_mask_matches_reference_table(model):
    c, w, shift, s0, s499, s999, first = REFERENCE[model]
    mask = dtr_mask(1000, c, 0.8, 4.0)
    assert mask.shape == (1000, c) and mask.dtype == torch.float32
    assert torch.all(mask.sum(1) == w)
    starts = mask.argmax(1)  # first 1 of each row
    assert (starts[0].item(), starts[499].item(), starts[999].item()) == (s0, s499, s999)
    assert starts.max().item() == shift
    assert int(torch.nonzero(starts >= 1)[0]) == first
    # hand-computed row 999: ones exactly on [L, C)
    expected = torch.zeros(c)
    expected[shift:] = 1
    assert torch.equal(mask[999], expected)


def test_dtr_round_half_to_even():
    # C=10, beta=0.5: L=5; with alpha=1 and T=3, the middle start is 2.5 -> 2 (half to even)
    assert dtr_window_starts(3, 10, 0.5, 1.0).tolist() == [0, 2, 5]
    mask = dtr_mask(3, 10, 0.5, 1.0)
    assert mask[1].tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0]


def test_alpha_controls_where_tasks_get_dedicated_channels():
    late = dtr_window_starts(1000, 384, 0.8, 4.0)
    even = dtr_window_starts(1000, 384, 0.8, 1.0)
    early = dtr_window_starts(1000, 384, 0.8, 0.5)
    assert late[500] < even[500] < early[500]
    assert all(list(s) == sorted(s) for s in (late, even, early))  # monotone windows


def test_beta_one_is_all_ones():
    assert torch.all(dtr_mask(1000, 64, 1.0, 4.0) == 1)


def test_random_mask_rows_and_overlap_statistics():
    t, c, beta = 1000, 384, 0.8
    w = int(c * beta)
    mask = random_mask(t, c, beta, seed=3)
    assert torch.all(mask.sum(1) == w)
    assert torch.equal(mask, random_mask(t, c, beta, seed=3))
    assert not torch.equal(mask, random_mask(t, c, beta, seed=4))
    shared = mask @ mask.T
    off_diag = shared[~torch.eye(t, dtype=torch.bool)]
    expected = w * w / c  # hypergeometric mean, the same for every pair
    assert abs(off_diag.mean().item() - expected) < 0.01 * expected
    # DTR shares more between neighbouring tasks than between distant ones; R-TR does not care
    dtr = dtr_mask(t, c, beta, 4.0)
    assert (dtr[998] @ dtr[999]) > (dtr[0] @ dtr[999])


def test_cdtr_rows_are_cluster_dtr_rows():
    bounds = equal_width_bounds(1000, 4)
    assert bounds == [(0, 249), (250, 499), (500, 749), (750, 999)]
    mask = cdtr_mask(1000, 384, 0.8, 4.0, bounds)
    rows = dtr_mask(4, 384, 0.8, 4.0)
    for k, (lo, hi) in enumerate(bounds):
        assert torch.equal(mask[lo], rows[k]) and torch.equal(mask[hi], rows[k])
    assert len(torch.unique(mask, dim=0)) == 4


def test_ercdt_shares_half_and_splits_the_rest():
    bounds = equal_width_bounds(1000, 4)
    mask = ercdt_mask(1000, 384, bounds)
    assert torch.all(mask[:, :192] == 1)
    assert torch.all(mask.sum(1) == 192 + 48)
    seg = mask[:, 192:]
    # distinct clusters read disjoint segments
    assert (seg[0] * seg[999]).sum() == 0
    assert torch.equal(mask[0], mask[249]) and not torch.equal(mask[249], mask[250])


@pytest.mark.parametrize("kwargs, word", [
    (dict(beta=0.0), "beta"), (dict(beta=1.5), "beta"), (dict(alpha=0.0), "alpha"),
    (dict(alpha=-1.0), "alpha"), (dict(clusters=0), "clusters"), (dict(kind="nope"), "kind"),
])
def test_spec_rejects_bad_values(kwargs, word):
    with pytest.raises(ValueError, match=word):
        RoutingSpec(kind=kwargs.pop("kind", "dtr"), **kwargs)


def test_functions_reject_bad_values():
    with pytest.raises(ValueError, match="channels"):
        dtr_mask(1000, 0, 0.8, 4.0)
    with pytest.raises(ValueError, match="beta"):
        random_mask(10, 8, 0.0)
    with pytest.raises(ValueError, match="clusters"):
        RoutingSpec(kind="cdtr", clusters=11).mask_table(10, 8, depth=2)


def test_spec_tables_and_serialisation():
    spec = RoutingSpec(kind="random", beta=0.5, seed=7)
    assert RoutingSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    table = spec.mask_table(100, 16, depth=3)
    assert table.shape == (3, 100, 16)
    assert not torch.equal(table[0], table[1])  # each block draws its own table
    assert torch.equal(table, spec.mask_table(100, 16, depth=3))
    assert RoutingSpec(kind="dtr").mask_table(100, 16, depth=3).shape == (1, 100, 16)
    assert RoutingSpec().mask_table(100, 16, depth=3) is None
