"""The search phase's Tune search algorithm: Tune's ``SearchGenerator`` whose trial count and
concurrency follow the sweep's settings when the phase is restored.

``Tuner.restore`` takes no ``TuneConfig``: a restored experiment keeps the sample count its
``SearchGenerator`` saved and the ``ConcurrencyLimiter`` state it saved.  A sweep resumed with a
larger ``--trials`` or another ``--max-concurrent`` writes them into ``sweep.json`` before it
restores (platform/sweep.py); this generator reads them back as soon as Tune has restored its
saved state (``restore_from_dir``), so the restored experiment asks the same searcher, and so the
same Optuna study, for the extra trials and runs up to the new number at once.
"""
from __future__ import annotations

import json
import os

from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.search_generator import SearchGenerator


class ResumableSearch(SearchGenerator):
    """``SearchGenerator(searcher)`` that applies ``trials`` (only ever raised) and
    ``max_concurrent`` from the sweep's settings file after a restore: ``ResumableSearch.settings``,
    which the driver sets to the sweep it resumes (the restored object was pickled with the path the
    sweep had when it started, and a sweep directory may have moved since), else that path."""

    settings: str | None = None  # the resuming driver's <sweep_dir>/sweep.json

    def __init__(self, searcher, settings_path: str):
        super().__init__(searcher)
        self.settings_path = settings_path

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        path, settings = type(self).settings or self.settings_path, {}
        if os.path.exists(path):
            with open(path) as f:
                settings = json.load(f)
        self.apply(settings.get("trials"), settings.get("max_concurrent"))

    def apply(self, trials: int | None, max_concurrent: int | None) -> None:
        """Raise the phase's trial count to ``trials`` (a lower count is left alone: trials that ran
        stay run) and set the concurrency limit to ``max_concurrent``."""
        if trials is not None and int(trials) > self._total_samples:
            self._total_samples = int(trials)
            self._finished = False
        if self.limiter is not None and max_concurrent:
            self.limiter.set_max_concurrency(int(max_concurrent))

    @property
    def limiter(self) -> ConcurrencyLimiter | None:
        searcher = self.searcher
        while searcher is not None and not isinstance(searcher, ConcurrencyLimiter):
            searcher = getattr(searcher, "searcher", None)
        return searcher
