"""The sweep's Optuna searcher: a repeated proposal becomes a seed repeat, and every trial reaches
the study in its true state.

Repeats: with deterministic seeds, a trial whose parameters TPE already proposed would train
exactly the same model again (TPE did propose beta = 0.68 twice in one laptop sweep).  Here such a
proposal runs with the next unused seed, so it is a repeat that the report pools with the earlier
ones (its confidence interval narrows) and Optuna learns the seed spread.  The count comes from
the study itself (the journal), so it survives a resumed sweep.

States (``optuna_state``): a trial's reports carry ``fid_k`` (the FID-k proxy, reported to the
study as intermediate values at the training step) and, only in the final report, ``fid``
(trainers/training/tune_trainable.py ``tune_metrics``).  A trial that ends with every objective
of a final report is COMPLETE; one that ASHA stopped (or that ended without a final report) is
PRUNED; one that errored or diverged (a non-finite FID) is FAIL.
"""
from __future__ import annotations

import math

from ray.tune.search.optuna import OptunaSearch


def optuna_state(result: dict | None, objectives: list[str], error: bool = False) -> tuple[str, list | None]:
    """("COMPLETE" | "PRUNED" | "FAIL", the objective values to tell or None) of a trial's last
    Tune result."""
    result = result or {}
    if error or result.get("diverged"):
        return "FAIL", None
    values = [result.get(m) for m in objectives]
    if result.get("final") and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return "COMPLETE", [float(v) for v in values]
    if result.get("final"):  # a final report without a finite objective: nothing true to tell
        return "FAIL", None
    return "PRUNED", None


class RepeatAsSeedOptunaSearch(OptunaSearch):
    """``OptunaSearch`` whose n-th proposal of the same parameters trains with ``base_seed + n``,
    telling Optuna COMPLETE / PRUNED / FAIL as ``optuna_state`` says."""

    def __init__(self, *args, base_seed: int = 0, intermediate: str = "fid_k", **kwargs):
        super().__init__(*args, **kwargs)
        self._base_seed = int(base_seed)
        self._intermediate = intermediate

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if not isinstance(config, dict):  # None (no more trials) or FINISHED
            return config
        asked = self._ot_trials[trial_id]
        repeats = sum(1 for t in self._ot_study.get_trials(deepcopy=False)
                      if t.number < asked.number and t.params == asked.params)
        return {**config, "seed": self._base_seed + repeats}

    def _report_intermediate(self, trial_id: str, result: dict | None) -> None:
        """The trial's FID-k at its training step as an Optuna intermediate value (single
        objective only: Optuna has no intermediate values for multi-objective studies)."""
        if isinstance(self.metric, list) or not result or trial_id not in self._ot_trials:
            return
        value, step = result.get(self._intermediate), result.get("step")
        if not isinstance(value, (int, float)) or not math.isfinite(value) or not isinstance(step, (int, float)):
            return
        ot_trial = self._ot_trials[trial_id]
        frozen = [t for t in self._ot_study.get_trials(deepcopy=False) if t.number == ot_trial.number]
        if frozen and int(step) not in frozen[0].intermediate_values:
            ot_trial.report(float(value), int(step))

    def on_trial_result(self, trial_id: str, result: dict):
        if trial_id not in self._completed_trials:
            self._report_intermediate(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        import optuna
        objectives = self.metric if isinstance(self.metric, list) else [self.metric]
        state, values = optuna_state(result, objectives, error)
        if state == "PRUNED":  # the FID-k it was stopped at (Tune does not pass a STOP result on)
            self._report_intermediate(trial_id, result)
        values = values if values is None or len(values) > 1 else values[0]
        self._ot_study.tell(self._ot_trials[trial_id], values, state=getattr(optuna.trial.TrialState, state))
        self._completed_trials.add(trial_id)
