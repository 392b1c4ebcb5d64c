"""The multi-expert baseline (paper App. D): N models on N equal timestep intervals vs one
model with and without DTR.  Each expert gets the full step budget, as in the paper."""
from search_spaces.base import Choice, SearchSpace

SPACE = SearchSpace(
    name="multi_expert",
    description="N-expert baseline (N models on N timestep intervals, paper App. D) vs vanilla and DTR",
    params={"multi_expert_n": Choice((2, 4))},
    base={"routing": "none"},
    baselines={"vanilla": {"routing": "none"}, "DTR": {"routing": "dtr", "beta": 0.8, "alpha": 4.0}},
    num_trials=2,
)
