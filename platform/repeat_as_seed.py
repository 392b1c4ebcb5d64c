"""Optuna search where a repeated proposal becomes a seed repeat instead of a wasted trial.

With deterministic seeds, a trial whose parameters TPE already proposed would train exactly
the same model again (TPE did propose beta = 0.68 twice in one laptop sweep).  Here such a
proposal runs with the next unused seed, so it is a repeat that the report pools with the
earlier ones (its confidence interval narrows) and Optuna learns the seed spread.  The count
comes from the study itself (the journal), so it survives a resumed sweep.
"""
from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch


class RepeatAsSeedOptunaSearch(OptunaSearch):
    """``OptunaSearch`` whose n-th proposal of the same parameters trains with ``base_seed + n``."""

    def __init__(self, *args, base_seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self._base_seed = int(base_seed)

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if not isinstance(config, dict):  # None (no more trials) or FINISHED
            return config
        asked = self._ot_trials[trial_id]
        repeats = sum(1 for t in self._ot_study.get_trials(deepcopy=False)
                      if t.number < asked.number and t.params == asked.params)
        return {**config, "seed": self._base_seed + repeats}
