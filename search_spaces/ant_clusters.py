"""ANT-UW's cluster count K and the clustering cost that places the clusters."""
from search_spaces.base import Choice, SearchSpace

SPACE = SearchSpace(
    name="ant_clusters",
    description="ANT-UW cluster count K in [2, 8] and clustering cost (snr / timestep / equal), with DTR",
    params={"uw_clusters": Choice((2, 4, 8)), "uw_cluster_method": Choice(("snr", "timestep", "equal"))},
    base={"weighting": "ant_uw", "routing": "dtr", "beta": 0.8, "alpha": 4.0},
    baselines={"vanilla": {"weighting": "vanilla", "routing": "none"},
               "DTR": {"weighting": "vanilla", "routing": "dtr"}},
    num_trials=6,
)
