"""ANT's PCGrad and Nash-MTL over K timestep clusters (trainers/training/gradient_combination.py)."""
import math

import pytest
import torch
from torchjd.aggregation import NashMTL, PCGrad

from trainers.config import RunConfig
from trainers.diffusion.gaussian import GaussianDiffusion
from trainers.models import build_model
from trainers.training.gradient_combination import (
    ClusterGradientCombiner,
    combined_backward,
    shared_parameters,
)
from trainers.training.objective import DiffusionObjective


def _engine(cfg: RunConfig, seed: int = 0):
    import deepspeed

    from trainers.training.distributed import ensure_single_process_env, init_deepspeed_distributed
    from trainers.training.loop import deepspeed_config
    ensure_single_process_env()
    init_deepspeed_distributed("cpu")
    torch.manual_seed(seed)
    model = build_model(cfg.model, input_size=cfg.image_size, in_channels=1, num_classes=1)
    objective = DiffusionObjective(cfg, model, GaussianDiffusion("linear", cfg.num_timesteps))
    optimizer = torch.optim.AdamW(objective.param_groups(), lr=cfg.lr, weight_decay=0.0)
    engine, *_ = deepspeed.initialize(model=objective, optimizer=optimizer, config=deepspeed_config(cfg, 1))
    return engine, objective


def _config(weighting: str, clusters: int, **kw) -> RunConfig:
    fields = {"model": "DiT-T/4", "image_size": 8, "class_cond": False, "global_batch": 8, "micro_batch": 8,
              "lr": 1e-3, **kw}
    return RunConfig(weighting=weighting, uw_clusters=clusters, **fields)


def _batch(objective: DiffusionObjective, step: int):
    gen = torch.Generator().manual_seed(100 + step)
    t, idx = objective.sample_timesteps(8, gen)
    return torch.randn(8, 1, 8, 8, generator=gen), torch.zeros(8, dtype=torch.long), t, \
        torch.randn(8, 1, 8, 8, generator=gen), idx


def _independent_jacobian(objective: DiffusionObjective, batch, clusters: int) -> torch.Tensor:
    """Row j: the gradient of cluster j's mean loss / K, from its own forward and backward pass."""
    x, y, t, noise, idx = batch
    params = shared_parameters(objective.model)
    rows = []
    for j in range(clusters):
        keep = idx == j
        terms = objective.diffusion.training_losses(objective._model_fp32_out, x[keep], t[keep], noise=noise[keep],
                                                    model_kwargs={"y": None})
        loss_j = (terms["mse"] + terms["vb"]).mean() / clusters
        grads = torch.autograd.grad(loss_j, params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


@pytest.mark.parametrize("weighting,clusters", [("pcgrad", 4), ("nash_mtl", 2)])
def test_engine_gradient_is_torchjd_aggregation_of_the_cluster_gradients(train_env, weighting, clusters):
    engine, objective = _engine(_config(weighting, clusters))
    batch = _batch(objective, 0)
    matrix = _independent_jacobian(objective, batch, clusters)
    reference = PCGrad() if weighting == "pcgrad" else NashMTL(n_tasks=clusters)
    torch.manual_seed(7)  # PCGrad's random projection order
    expected = reference(matrix)
    loss, logs = engine(*batch)
    assert logs["cluster_losses"].shape == (clusters,)
    torch.manual_seed(7)
    combined_backward(engine, objective, loss, logs)
    got = torch.cat([p.grad.reshape(-1) for p in shared_parameters(objective.model)])
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(got, matrix.sum(0), rtol=1e-3)  # the combination changed the plain sum
    record = objective.log_record()
    weights = torch.tensor([record[f"mtl_w{j}"] for j in range(clusters)])
    assert torch.allclose(weights @ matrix, expected, rtol=1e-4, atol=1e-7)
    unit = matrix / matrix.norm(dim=1, keepdim=True)
    assert record["mtl_cos0_1"] == pytest.approx(float(unit[0] @ unit[1]), abs=1e-5)
    assert len(record) == clusters + clusters * (clusters - 1) // 2


def test_pcgrad_projects_two_conflicting_gradients_by_hand():
    combiner = ClusterGradientCombiner("pcgrad", 2)
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # g1 . g2 = -1 < 0
    # g1 off g2: g1 - (g1.g2 / |g2|^2) g2 = (0.5, 0.5); g2 off g1: g2 + g1 = (0, 1); sum (0.5, 1.5)
    out = combiner.combine(torch.stack([g1, g2]))
    assert torch.allclose(out, torch.tensor([0.5, 1.5]))
    record = combiner.record()
    assert (record["mtl_w0"], record["mtl_w1"]) == pytest.approx((2.0, 1.5))  # 2 g1 + 1.5 g2
    assert record["mtl_cos0_1"] == pytest.approx(-1 / math.sqrt(2))
    agree = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # no conflict: the plain sum
    assert torch.allclose(combiner.combine(agree), agree.sum(0))


def test_nash_mtl_weights_meet_the_bargaining_condition():
    """Nash-MTL's weights solve (J J^T) a = 1 / a, J the per-cluster gradients (without the norm clip)."""
    combiner = ClusterGradientCombiner("nash_mtl", 2, nash_max_norm=0.0)
    matrix = torch.tensor([[1.0, 0.0, 0.5], [0.3, 1.0, 0.0]], dtype=torch.float64)
    out = combiner.combine(matrix)
    a = combiner.last["weights"].double()
    gram = matrix @ matrix.T
    assert (a > 0).all()
    assert torch.allclose(gram @ a, 1 / a, rtol=1e-2)
    assert torch.allclose(out.double(), a @ matrix, rtol=1e-5)


@pytest.mark.parametrize("stage", [0, 1])
def test_training_steps_under_deepspeed(train_env, stage):
    engine, objective = _engine(_config("pcgrad", 2, zero_stage=stage))
    before = [p.detach().clone() for p in shared_parameters(objective.model)]
    for step in range(3):
        loss, logs = engine(*_batch(objective, step))
        assert torch.isfinite(loss)
        combined_backward(engine, objective, loss, logs)
        engine.step()
    after = shared_parameters(objective.model)
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))


def test_nash_mtl_state_resumes_exactly_from_a_deepspeed_checkpoint(train_env, tmp_path):
    cfg = _config("nash_mtl", 2)

    def step(engine, objective, n):
        loss, logs = engine(*_batch(objective, n))
        combined_backward(engine, objective, loss, logs)
        engine.step()
        return objective.combiner.last["weights"]

    engine, objective = _engine(cfg)
    for n in range(2):
        step(engine, objective, n)
    engine.save_checkpoint(str(tmp_path), tag="s2")
    expected = step(engine, objective, 2)
    state = objective.combiner.get_extra_state()
    assert state["step"].item() == 3.0

    engine2, objective2 = _engine(cfg, seed=1)  # other weights, fresh Nash-MTL state
    engine2.load_checkpoint(str(tmp_path), tag="s2")
    assert objective2.combiner.get_extra_state()["step"].item() == 2.0
    got = step(engine2, objective2, 2)
    assert torch.equal(got, expected)
    for a, b in zip(shared_parameters(objective.model), shared_parameters(objective2.model)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("changes,match", [
    ({"zero_stage": 2}, "pcgrad supports zero_stage 0 or 1"),
    ({"zero_stage": 3}, "pcgrad supports zero_stage 0 or 1"),
    ({"micro_batch": 4}, "set micro_batch = global_batch"),
    ({"uw_clusters": 1}, "uw_clusters >= 2"),
    ({"uw_clusters": 3}, "divisible by uw_clusters=3"),
])
def test_unsupported_combinations_fail_at_the_config_with_one_line(changes, match):
    with pytest.raises(ValueError, match=match) as err:
        _config("pcgrad", changes.pop("uw_clusters", 2), **changes)
    assert "\n" not in str(err.value)
    assert _config("nash_mtl", 4, zero_stage=1).label() == "vanilla + ANT-Nash-MTL"
