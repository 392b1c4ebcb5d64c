"""Loss weightings with and without DTR (paper Table 2)."""
from search_spaces.base import Choice, SearchSpace

SPACE = SearchSpace(
    name="loss_weighting",
    description="vanilla / Min-SNR / P2 / ANT-UW, each with and without DTR (paper Table 2)",
    params={"weighting": Choice(("vanilla", "min_snr", "p2", "ant_uw")), "routing": Choice(("none", "dtr"))},
    base={"beta": 0.8, "alpha": 4.0},
    baselines={"vanilla": {"routing": "none", "weighting": "vanilla"},
               "DTR": {"routing": "dtr", "weighting": "vanilla"}},
    num_trials=8,
)
