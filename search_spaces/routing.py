"""Routing kind: none / R-TR / DTR / CDTR / ERCDT (paper Table 1 and App. F)."""
from search_spaces.base import Choice, Int, SearchSpace

SPACE = SearchSpace(
    name="routing",
    description="routing kind none / random / dtr / cdtr / ercdt / learned (Switch-DiT), with the cluster count "
                "of the clustered kinds",
    params={"routing": Choice(("none", "random", "dtr", "cdtr", "ercdt", "learned")),
            "routing_clusters": Int(2, 8)},
    base={"beta": 0.8, "alpha": 4.0},
    baselines={"vanilla": {"routing": "none"}, "R-TR": {"routing": "random"}, "DTR": {"routing": "dtr"}},
    num_trials=6,
)
