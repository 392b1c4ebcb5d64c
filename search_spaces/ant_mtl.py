"""ANT's multi-task methods over the K timestep clusters (UW, PCGrad, Nash-MTL), with and without DTR.

PCGrad and Nash-MTL combine the clusters' gradients of the whole global batch in one process
(trainers/config_checks_mtl.py): the base pins one micro-batch per step (micro_batch = global_batch
= 64, the laptop preset's) and ZeRO-0, so every trial config is valid at every budget.  A trial is
one process: run it with the smoke or laptop budget (the multi-worker budgets smoke-ddp, paper-sim and
paper would make DeepSpeed refuse the batch at the trial's start, one line); at paper scale use one
GPU per trial with ``--set``.
"""
from search_spaces.base import Choice, SearchSpace

SPACE = SearchSpace(
    name="ant_mtl",
    description="ANT-UW / ANT-PCGrad / ANT-Nash-MTL over 8 timestep clusters, each with and without DTR "
                "(one process per trial: smoke or laptop budget)",
    params={"weighting": Choice(("ant_uw", "pcgrad", "nash_mtl")), "routing": Choice(("none", "dtr"))},
    base={"beta": 0.8, "alpha": 4.0, "uw_clusters": 8, "uw_cluster_method": "timestep",
          "global_batch": 64, "micro_batch": 64, "zero_stage": 0},
    baselines={"vanilla": {"routing": "none", "weighting": "vanilla"},
               "DTR": {"routing": "dtr", "weighting": "vanilla"}},
    num_trials=6,
)
