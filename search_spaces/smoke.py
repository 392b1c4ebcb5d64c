"""The tiny space the test suite runs end to end."""
from search_spaces.base import Float, SearchSpace

SPACE = SearchSpace(
    name="smoke",
    description="tests only: beta of a tiny DTR model for a few steps, vanilla as baseline",
    params={"beta": Float(0.5, 0.95, step=0.05)},
    base={"routing": "dtr", "alpha": 4.0},
    baselines={"vanilla": {"routing": "none"}},
    num_trials=2,
)
