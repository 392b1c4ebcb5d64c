"""MaxRoaming (routing="maxroaming", trainers/routing/roaming.py): R-TR tables re-drawn every
``roaming_every`` steps as a pure function of (routing_seed, period), so that resume is exact with
no extra state; evaluation uses the last trained step's period.  The resume check is the one of
tests/test_train.py (full run vs stop + resume: every logged record and every checkpoint tensor
equal), at a few steps of the smoke preset."""
import os

import pytest
import torch
from train_support import ds_module_state, load, smoke, trajectory

from trainers.config import RunConfig
from trainers.models import build_model
from trainers.routing.masks import window_width
from trainers.routing.roaming import roaming_period, roaming_tables, sync_roaming
from trainers.routing.spec import RoutingSpec, effective_routing_kind
from trainers.training.checkpoint import latest_checkpoint, tag_for
from trainers.training.run import train
from trainers.training.tracking import read_metrics


def test_every_row_keeps_w_channels_and_tables_are_a_function_of_the_period():
    T, C, depth, beta = 40, 20, 3, 0.8
    w = window_width(C, beta)
    assert w == 16
    tables = {p: roaming_tables(T, C, depth, beta, seed=7, period=p) for p in (0, 1, 2)}
    for table in tables.values():
        assert table.shape == (depth, T, C) and set(table.unique().tolist()) == {0.0, 1.0}
        assert torch.equal(table.sum(-1), torch.full((depth, T), float(w)))  # exactly W ones in every row
        assert not torch.equal(table[0], table[1])  # each block draws its own table
    assert not torch.equal(tables[0], tables[1]) and not torch.equal(tables[1], tables[2])
    assert torch.equal(tables[1], roaming_tables(T, C, depth, beta, seed=7, period=1))  # same period, same draw
    assert not torch.equal(tables[1], roaming_tables(T, C, depth, beta, seed=8, period=1))
    # the period of a step, and the model's tables at build time (period 0)
    assert [roaming_period(s, 5) for s in (0, 4, 5, 9, 10)] == [0, 0, 1, 1, 2]
    spec = RoutingSpec(kind="maxroaming", seed=7)
    assert torch.equal(spec.mask_table(T, C, depth), tables[0])
    assert effective_routing_kind("maxroaming", 1.0) == "none"
    assert RunConfig(routing="maxroaming").label() == "MaxRoaming"
    with pytest.raises(ValueError, match="roaming_every"):
        RunConfig(routing="maxroaming", roaming_every=0)


@pytest.mark.parametrize("name", ["DiT-T/4", "ADM-T"])
def test_the_hook_swaps_the_buffers_at_the_redraw_steps(name):
    cfg = RunConfig(model=name, routing="maxroaming", roaming_every=3, routing_seed=5, beta=0.5)
    torch.manual_seed(0)
    model = build_model(name, input_size=32, in_channels=1, num_classes=10, routing=cfg.routing_spec())
    buffers = dict(model.named_buffers())
    names = [k for k in buffers if "routing" in k]
    seen = {}
    for step in range(7):
        sync_roaming(cfg, step, model)
        now = dict(model.named_buffers())
        assert all(now[k] is buffers[k] for k in names)  # in place: an engine keeps its tensors
        seen[step] = [now[k].clone() for k in names]
        for k in names:
            depth, T, C = now[k].shape
            assert torch.equal(now[k], roaming_tables(T, C, depth, 0.5, 5, step // 3))
    for a, b in ((0, 2), (3, 5), (6, 6)):
        assert all(torch.equal(x, y) for x, y in zip(seen[a], seen[b]))
    assert not any(torch.equal(x, y) for x, y in zip(seen[2], seen[3]))


def _cfg(env, name, steps):
    return smoke(env, name, routing="maxroaming", roaming_every=2, steps=steps, ckpt_every=3, log_every=1,
                 final_eval_samples=0)


def test_resumed_maxroaming_run_is_bit_identical(train_env):
    """6 steps straight vs 3 + resume to 6: the checkpoint at step 3 falls inside period 1 (steps 2, 3),
    so the resumed process must re-draw period 1 exactly, then period 2 at step 4."""
    full = _cfg(train_env, "roam-full", 6)
    train(full, mlflow_enabled=False, threads=1)
    split = _cfg(train_env, "roam-split", 6)
    train(split.replace(steps=3), mlflow_enabled=False, threads=1)
    train(split, resume=split.run_dir, mlflow_enabled=False, threads=1)

    a, b = trajectory(read_metrics(full.run_dir)), trajectory(read_metrics(split.run_dir))
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 7))
    assert a == b  # exact ==
    ckpt_a, ckpt_b = latest_checkpoint(full.run_dir), latest_checkpoint(split.run_dir)
    assert ckpt_a.endswith(tag_for(6)) and ckpt_b.endswith(tag_for(6))
    ema_a, ema_b = load(os.path.join(ckpt_a, "ema.pt")), load(os.path.join(ckpt_b, "ema.pt"))
    live_a, live_b = ds_module_state(ckpt_a), ds_module_state(ckpt_b)
    assert ema_a.keys() == ema_b.keys() and live_a.keys() == live_b.keys()
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    assert all(torch.equal(live_a[k], live_b[k]) for k in live_a)
    # evaluation weights carry the tables of the last trained step's period: (6 - 1) // 2 = 2
    depth, T, C = ema_a["routing_masks"].shape
    last = roaming_tables(T, C, depth, full.beta, full.routing_seed, 2)
    assert torch.equal(ema_a["routing_masks"], last) and torch.equal(live_a["model.routing_masks"], last)
    assert not torch.equal(last, roaming_tables(T, C, depth, full.beta, full.routing_seed, 0))
