"""The verdicts of one invocation: every metric against its baseline entry, the routing-cost
claim on the step ratios, and the exit status (1 when anything regressed beyond its band)."""
from __future__ import annotations

from dataclasses import dataclass, field

from platform.bench.baseline import Baseline
from platform.bench.gate import (
    CLAIM_LIMIT,
    ClaimResult,
    Stat,
    Verdict,
    claim_check,
    compare,
    verdict_dict,
)
from platform.bench.options import BenchOptions
from trainers.bench import cases as C


@dataclass
class BenchResult:
    stats: list[Stat] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    claims: list[ClaimResult] = field(default_factory=list)
    exit_code: int = 0
    record: dict = field(default_factory=dict)

    @property
    def regressed(self) -> bool:
        return any(v.regressed for v in self.verdicts) or any(c.failed for c in self.claims)


def judge(stats: list[Stat], opts: BenchOptions, speed_cases) -> BenchResult:
    """Compare ``stats`` with the baseline of ``opts.scale``; judge the claim where it applies
    (DiT-S/2 training steps on CPU: the setting of the paper's number)."""
    baseline = Baseline.load(opts.baseline)
    verdicts = [compare(st, baseline.entry(opts.scale, st.name), gate_absolute=opts.gate_absolute) for st in stats]
    claims = []
    train_models = {c.model for c in speed_cases if isinstance(c, C.TrainStepCase)}
    applicable = train_models == {"DiT-S/2"} and opts.device == "cpu"
    why_not = f"the claim is about DiT-S/2 on CPU; this run: {', '.join(sorted(train_models))} on {opts.device}"
    by_name = {st.name: st for st in stats}
    for name in ("dtr_step_ratio", "rtr_step_ratio"):
        if name in by_name:
            claims.append(claim_check(by_name[name], CLAIM_LIMIT, applicable, "" if applicable else why_not))
    result = BenchResult(stats, verdicts, claims)
    result.exit_code = 1 if result.regressed else 0
    return result


def verdict_fields(v: Verdict) -> dict:
    """What the history keeps of a verdict (beside the metric's own summary)."""
    d = verdict_dict(v)
    return {"status": d["status"], "base_mean": d["base_mean"], "allowed": d["allowed"], "note": d["note"]}
