"""Learned routing (Switch-DiT, a learned sliding window) against fixed DTR and R-TR."""
from search_spaces.base import Choice, Float, SearchSpace

SPACE = SearchSpace(
    name="learned_vs_fixed",
    description="learned routing (Switch-DiT / learned window) and its prior weight vs fixed DTR, R-TR, vanilla",
    params={"routing": Choice(("learned", "learned_window")), "prior_weight": Float(0.1, 2.0, log=True)},
    base={"beta": 0.8, "alpha": 4.0},
    baselines={"vanilla": {"routing": "none"}, "DTR": {"routing": "dtr"}, "R-TR": {"routing": "random"}},
    num_trials=4,
)
