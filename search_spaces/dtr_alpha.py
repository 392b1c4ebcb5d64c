"""DTR shift power alpha (paper Table 4) at beta = 0.8."""
from search_spaces.base import Float, SearchSpace

SPACE = SearchSpace(
    name="dtr_alpha",
    description="DTR shift power alpha in [0.5, 6] at beta=0.8 (paper Table 4) vs vanilla",
    params={"alpha": Float(0.5, 6.0, step=0.5)},
    base={"routing": "dtr", "beta": 0.8},
    baselines={"vanilla": {"routing": "none"}, "R-TR": {"routing": "random", "beta": 0.8}},
    num_trials=6,
)
