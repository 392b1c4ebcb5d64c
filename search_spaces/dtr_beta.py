"""DTR activation ratio beta (paper Fig. 4); baselines vanilla (beta = 1) and R-TR."""
from search_spaces.base import Float, SearchSpace

SPACE = SearchSpace(
    name="dtr_beta",
    description="DTR activation ratio beta in [0.3, 1) (paper Fig. 4) vs vanilla and R-TR",
    params={"beta": Float(0.3, 0.99, step=0.01)},
    base={"routing": "dtr", "alpha": 4.0},
    baselines={"vanilla": {"routing": "none"}, "R-TR": {"routing": "random", "beta": 0.8}},
    num_trials=4,
)
