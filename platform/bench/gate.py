"""Noise bands, the baseline gate and the routing-cost claim check.

Every benchmark metric is a list of repeated measurements: one value per interleaved round
(speed) or per seed (quality).  Nothing here uses a hand-picked tolerance:

* a metric's own noise band is ``t(n-1) * se`` with ``se = std / sqrt(n)`` and ``t`` the
  Student-t quantile at the one-sided 3-sigma point (``CONFIDENCE`` = 0.99865), so with many
  rounds it is the familiar ``3 * std / sqrt(n)`` and with 3 seeds it widens as it should;
* a run is compared with the baseline by the difference of means, allowed to move by
  ``t(df) * sqrt(se_run**2 + se_base**2)`` (Welch's degrees of freedom).  Beyond that, upwards,
  is a regression (times, time ratios, FID are lower-is-better); a metric marked
  ``higher_is_better`` (throughput, FLOP/s, MFU) regresses downwards;
* a ratio metric (``dtr_step_ratio = t_dtr / t_vanilla``) is formed round by round from the
  two cases timed back to back in that round, so its band comes from the spread of the
  per-round ratios, not from the (much larger) drift of the machine's speed.

The baseline file itself is baseline.py.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

CONFIDENCE = 0.99865  # one-sided normal 3-sigma point
CLAIM_LIMIT = 1.02    # "routing adds <= 2% step time" (DTR paper App. E)

# statuses of a comparison
OK, REGRESSION, FASTER, NEW, CHANGED, INFO, UNBANDED = (
    "ok", "REGRESSION", "better", "new", "changed", "info", "unbanded")


def t_multiplier(df: float) -> float:
    """Student-t quantile at ``CONFIDENCE`` (3.0 for infinite degrees of freedom)."""
    if not df or df <= 0 or math.isnan(df):
        return math.nan
    from scipy.stats import t
    return float(t.ppf(CONFIDENCE, df)) if math.isfinite(df) else 3.0


@dataclass(frozen=True)
class Stat:
    """A benchmark metric: repeated values, what they measure, and whether the gate checks them."""

    name: str
    values: tuple[float, ...]
    unit: str = "x"           # "ms", "x" (a ratio), "FID"
    gated: bool = True        # absolute times are reported, not gated (see speed.py)
    fingerprint: str = ""     # hash of the case definition: a changed case is not compared
    description: str = ""
    higher_is_better: bool = False   # throughput, FLOP/s, MFU: a fall is the regression

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if self.n >= 2 else math.nan

    @property
    def se(self) -> float:
        return self.std / math.sqrt(self.n) if self.n >= 2 else math.nan

    @property
    def band(self) -> float:
        """Half-width of this metric's own noise band: ``t(n-1) * se``."""
        return t_multiplier(self.n - 1) * self.se if self.n >= 2 else math.nan

    def summary(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": self.n, "se": self.se, "band": self.band,
                "values": list(self.values), "unit": self.unit, "gated": self.gated,
                "fingerprint": self.fingerprint, "description": self.description,
                "higher_is_better": self.higher_is_better}


def ratio_values(numerator, denominator) -> tuple[float, ...]:
    """Per-round ratios of two cases measured back to back in the same rounds."""
    if len(numerator) != len(denominator):
        raise ValueError(f"ratio of {len(numerator)} and {len(denominator)} rounds")
    return tuple(a / b for a, b in zip(numerator, denominator))


@dataclass(frozen=True)
class Verdict:
    """One metric of this run against its baseline entry."""

    name: str
    status: str
    mean: float
    band: float                # this run's own band
    base_mean: float = math.nan
    base_band: float = math.nan
    delta: float = math.nan    # mean - base_mean
    allowed: float = math.nan  # how far mean may move the wrong way (up; down if higher is better) before it regresses
    note: str = ""

    @property
    def regressed(self) -> bool:
        return self.status == REGRESSION

    @property
    def rel_change(self) -> float:
        return self.delta / self.base_mean if self.base_mean else math.nan


def comparison_band(se_run: float, n_run: int, se_base: float, n_base: int) -> float:
    """``t(df) * sqrt(se_run^2 + se_base^2)`` with Welch-Satterthwaite degrees of freedom."""
    var = se_run**2 + se_base**2
    if math.isnan(var):
        return math.nan
    if var == 0.0:
        return 0.0
    denom = (se_run**4 / (n_run - 1) if n_run > 1 else 0.0) + (se_base**4 / (n_base - 1) if n_base > 1 else 0.0)
    df = var**2 / denom if denom > 0 else math.inf
    return t_multiplier(df) * math.sqrt(var)


def compare(stat: Stat, base: dict | None, *, gate_absolute: bool = False) -> Verdict:
    """Judge ``stat`` against its baseline entry (a :meth:`Stat.summary` dict, or None)."""
    own = {"name": stat.name, "mean": stat.mean, "band": stat.band}
    if not base:
        return Verdict(status=NEW, note="no baseline entry", **own)
    base_mean, base_band = _num(base.get("mean")), _num(base.get("band"))
    known = {"base_mean": base_mean, "base_band": base_band, "delta": stat.mean - base_mean}
    if base.get("fingerprint", "") != stat.fingerprint:
        return Verdict(status=CHANGED, note="case definition differs from the baseline's: not compared",
                       **own, **known)
    n_base = int(base.get("n", 0))
    if stat.n < 2 or n_base < 2:
        return Verdict(status=UNBANDED, note="fewer than 2 repeats: no noise band", **own, **known)
    allowed = comparison_band(stat.se, stat.n, _num(base.get("se")), n_base)
    worse = -known["delta"] if stat.higher_is_better else known["delta"]
    if not (stat.gated or gate_absolute):
        status = INFO
    elif worse > allowed:
        status = REGRESSION
    elif worse < -allowed:
        status = FASTER
    else:
        status = OK
    return Verdict(status=status, allowed=allowed, **own, **known)


# --- the routing-cost claim -------------------------------------------------------------------

@dataclass(frozen=True)
class ClaimResult:
    name: str
    status: str          # PASS | PASS (within noise) | FAIL | n/a
    mean: float
    band: float
    limit: float = CLAIM_LIMIT
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


def claim_check(stat: Stat, limit: float = CLAIM_LIMIT, applicable: bool = True, why_not: str = "") -> ClaimResult:
    """"Routing adds <= (limit - 1) step time": PASS when the mean ratio is within the limit;
    PASS (within noise) when it is above but the limit lies inside the ratio's own noise band;
    FAIL only when even ``mean - band`` exceeds the limit (that counts as a regression)."""
    mean, band = stat.mean, stat.band
    if not applicable:
        return ClaimResult(stat.name, "n/a", mean, band, limit, why_not)
    if mean <= limit:
        return ClaimResult(stat.name, "PASS", mean, band, limit)
    if math.isnan(band) or mean - band <= limit:
        return ClaimResult(stat.name, "PASS (within noise)", mean, band, limit,
                           "above the limit but inside the noise band: not a regression")
    return ClaimResult(stat.name, "FAIL", mean, band, limit, "beyond the noise band: counts as a regression")


def _num(x) -> float:
    return math.nan if x is None else float(x)


def json_safe(obj):
    """Plain JSON: NaN/inf become null, tuples lists, anything else unknown its str()."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def verdict_dict(v: Verdict) -> dict:
    return json_safe(asdict(v))
