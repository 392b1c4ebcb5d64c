"""Named search spaces: one small declarative module per sweep."""
from __future__ import annotations

import importlib

from search_spaces.base import Choice, Float, Int, SearchSpace

SPACE_MODULES = ("dtr_beta", "dtr_alpha", "routing", "loss_weighting", "ant_clusters", "multi_expert",
                 "learned_vs_fixed", "smoke", "text_routing", "ant_mtl", "ant_affinity")


def all_spaces() -> dict[str, SearchSpace]:
    spaces = {}
    for module in SPACE_MODULES:
        space = importlib.import_module(f"search_spaces.{module}").SPACE
        spaces[space.name] = space
    return spaces


def get_space(name: str) -> SearchSpace:
    spaces = all_spaces()
    if name not in spaces:
        raise ValueError(f"unknown search space {name!r}; choose from {', '.join(sorted(spaces))}")
    return spaces[name]


__all__ = ["Choice", "Float", "Int", "SearchSpace", "all_spaces", "get_space"]
