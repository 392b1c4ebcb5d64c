"""The `make bench` case of ANT's PCGrad / Nash-MTL cost (trainers/bench MtlStepCase, platform/bench/mtl.py):
its cases read the laptop preset, its ratios are formed round by round, and its runner takes a real
combined step.  The case runs at the full scale only (minutes of CPU)."""
import pytest
import torch

from platform.bench.mtl import mtl_lines, mtl_stats
from platform.bench.options import select_speed_cases
from trainers.bench import cases as C
from trainers.presets import preset_config


def test_cases_read_the_laptop_preset_and_join_the_full_suite_only():
    vanilla, pcgrad, nash = C.mtl_cases("laptop")
    laptop = preset_config("laptop")
    assert (vanilla.model, vanilla.dataset, vanilla.image_size, vanilla.micro_batch) == (
        laptop.model, laptop.dataset, laptop.image_size, laptop.micro_batch)
    assert [c.weighting for c in (vanilla, pcgrad, nash)] == ["vanilla", "pcgrad", "nash_mtl"]
    full = {c.name: c for c in C.suite("full").speed}
    assert full["pcgrad"].micro_batch == 32 and full["pcgrad"].uw_clusters == 8
    assert {c.name for c in select_speed_cases(C.suite("full").speed, ("nash_mtl",))} == {
        "mtl_vanilla", "pcgrad", "nash_mtl"}
    assert not any(isinstance(c, C.MtlStepCase) for c in C.suite("tiny").speed)


def test_ratios_are_formed_round_by_round():
    cases = C.mtl_cases("laptop", micro_batch=32)
    times = {"mtl_vanilla": [0.5, 0.25], "pcgrad": [4.0, 2.5], "nash_mtl": [3.0, 3.0]}
    by = {s.name: s for s in mtl_stats(cases, times, {"threads": 1})}
    assert by["pcgrad_step_ratio"].values == pytest.approx((8.0, 10.0)) and by["pcgrad_step_ratio"].gated
    assert by["nash_mtl_step_ratio"].values == pytest.approx((6.0, 12.0))
    assert by["step_ms_pcgrad"].values == pytest.approx((4000.0, 2500.0)) and not by["step_ms_pcgrad"].gated
    line = mtl_lines(by)[1]
    assert "PCGrad x9.00" in line and "Nash-MTL x9.00" in line
    assert mtl_stats(cases[1:], times, {"threads": 1})[-1].name == "step_ms_nash_mtl"  # no vanilla: no ratio


def test_runner_takes_a_combined_step():
    """``--engine torch`` (the DeepSpeed path is what `make bench` ran, see the report)."""
    from trainers.bench.mtl_steps import MtlStepRunner
    case = C.mtl_cases("laptop", micro_batch=8)[1]
    runner = MtlStepRunner(case, torch.device("cpu"), engine="torch")
    before = [p.detach().clone() for p in runner.objective.model.parameters() if p.requires_grad]
    runner.unit()
    weights = runner.objective.combiner.record()
    assert runner.engine is None and set(weights) >= {f"mtl_w{j}" for j in range(8)}
    after = [p for p in runner.objective.model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))  # the optimizer stepped
