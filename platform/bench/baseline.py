"""``baseline.json``: the committed numbers every bench run is gated against.

Per scale ("full", "tiny"), every metric's :meth:`Stat.summary` when it was recorded, plus what
it was recorded with (git commit, host, conditions).  Written only by ``--update-baseline``,
which replaces the entries of the metrics that run measured and keeps the others (a speed
update keeps the quality entries).  The default file is platform/bench/baseline.json.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

from platform.bench.gate import Stat, json_safe
from trainers.files import atomic_write_text

ABOUT = ("DTR platform benchmark baseline; written only by `python -m platform.bench --update-baseline` "
         "(see platform/bench)")


@dataclass
class Baseline:
    """``baseline.json``: per scale ("full", "tiny"), the summary of every metric when it was recorded."""

    path: str
    scales: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> Baseline:
        if not os.path.exists(path):
            return cls(path)
        with open(path) as f:
            data = json.load(f)
        return cls(path, data.get("scales", {}))

    def entries(self, scale: str) -> dict:
        return self.scales.get(scale, {}).get("metrics", {})

    def entry(self, scale: str, name: str) -> dict | None:
        return self.entries(scale).get(name)

    def update(self, scale: str, stats: list[Stat], meta: dict) -> None:
        """Replace the entries of ``stats`` (others are kept: a speed update keeps quality entries)."""
        block = self.scales.setdefault(scale, {"metrics": {}})
        for stat in stats:
            block["metrics"][stat.name] = {**json_safe(stat.summary()), "recorded": meta}

    def save(self) -> None:
        data = {"version": 1, "about": ABOUT, "scales": _rounded(self.scales)}
        atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def _rounded(obj, digits: int = 6):
    """Floats to ``digits`` significant digits (a readable, diff-friendly committed file)."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v, digits) for v in obj]
    return obj
