"""Honest trial states: what a trial reports to Tune (trainers/training/tune_trainable.py), what the
sweep's searcher tells Optuna (platform/repeat_as_seed.py, on a real Optuna study) and what the
trial table says (reports/tune_state.py).  A trial ASHA stopped is PRUNED with its FID-k values as
intermediate values, never COMPLETE with a FID-k under ``fid``; a diverged trial is FAIL."""
import math

import optuna
import pytest

from trainers.training.tune_trainable import Diverged, tune_metrics

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_reports_keep_fid_k_apart_from_the_final_fid():
    # what trainers/training/loop.py reports at a FID-k step: its "fid" is the FID-k
    mid = tune_metrics({"step": 10, "loss": 0.3, "fid": 91.0, "fid_k": 91.0, "images_per_s": 40.0, "final": False})
    assert mid["fid_k"] == 91.0 and mid["step"] == 10.0
    assert mid["fid"] is None and mid["precision"] is None  # present (Tune's metric check) but no final value
    final = tune_metrics({"step": 20, "fid": 80.5, "precision": 0.4, "images_per_s": 41.0, "final": True},
                         last_fid_k=85.0)
    assert (final["fid"], final["fid_k"], final["precision"], final["final"]) == (80.5, 85.0, 0.4, True)
    with pytest.raises(Diverged, match="FID-k is nan at step 10"):
        tune_metrics({"step": 10, "fid": math.nan, "fid_k": math.nan, "final": False})
    with pytest.raises(Diverged, match="final FID is inf"):
        tune_metrics({"step": 20, "fid": math.inf, "final": True})
    # a checkpoint-only report before any FID-k: no throughput yet is None, not missing
    assert tune_metrics({"step": 5, "loss": 0.5, "final": False})["images_per_s"] is None


def _searcher(tmp_path, metric, mode):
    from ray import tune

    from platform.repeat_as_seed import RepeatAsSeedOptunaSearch
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log")))
    searcher = RepeatAsSeedOptunaSearch(space={"beta": tune.quniform(0.5, 0.95, 0.05)}, metric=metric, mode=mode,
                                        storage=storage, study_name="states",
                                        sampler=optuna.samplers.RandomSampler(seed=0))
    return searcher, storage


def test_optuna_is_told_pruned_complete_and_fail(tmp_path):
    from ray.tune.search.optuna.optuna_search import OptunaSearch  # noqa: F401  (Ray's searcher, subclassed)
    searcher, storage = _searcher(tmp_path, "fid", "min")
    for trial_id in ("stopped", "done", "diverged", "crashed"):
        assert "seed" in searcher.suggest(trial_id)
    # stopped by ASHA after its second FID-k: Tune passes the STOP result to on_trial_complete only
    searcher.on_trial_result("stopped", tune_metrics({"step": 10, "fid": 95.0, "fid_k": 95.0, "final": False}))
    last = tune_metrics({"step": 20, "fid": 90.0, "fid_k": 90.0, "final": False})
    searcher.on_trial_complete("stopped", result=last)
    searcher.on_trial_result("done", tune_metrics({"step": 10, "fid": 70.0, "fid_k": 70.0, "final": False}))
    searcher.on_trial_complete("done", result=tune_metrics({"step": 20, "fid": 60.0, "final": True}, 65.0))
    searcher.on_trial_complete("diverged", result={"diverged": True, "final": False, "fid": None, "fid_k": None})
    searcher.on_trial_complete("crashed", error=True)
    searcher.on_trial_complete("done", result={"final": True, "fid": 1.0})  # a second completion is ignored
    study = optuna.load_study(study_name="states", storage=storage)
    trials = sorted(study.trials, key=lambda t: t.number)
    S = optuna.trial.TrialState
    assert [t.state for t in trials] == [S.PRUNED, S.COMPLETE, S.FAIL, S.FAIL]
    assert trials[0].intermediate_values == {10: 95.0, 20: 90.0}
    assert trials[1].value == 60.0 and trials[1].intermediate_values == {10: 70.0}  # the final FID, not FID-k
    assert study.best_trial.number == trials[1].number


def test_multi_objective_trials_complete_only_with_every_final_value(tmp_path):
    searcher, storage = _searcher(tmp_path, ["fid", "images_per_s"], ["min", "max"])
    for trial_id in ("a", "b", "c"):
        searcher.suggest(trial_id)
    searcher.on_trial_result("a", tune_metrics({"step": 10, "fid": 9.0, "fid_k": 9.0, "images_per_s": 5.0,
                                                "final": False}))
    searcher.on_trial_complete("a", result=tune_metrics({"step": 20, "fid": 8.0, "images_per_s": 5.5,
                                                         "final": True}))
    searcher.on_trial_complete("b", result=tune_metrics({"step": 10, "fid": 9.0, "fid_k": 9.0,
                                                         "images_per_s": 6.0, "final": False}))
    searcher.on_trial_complete("c", result=tune_metrics({"step": 20, "fid": 7.0, "final": True}))  # no img/s
    study = optuna.load_study(study_name="states", storage=storage)
    trials = sorted(study.trials, key=lambda t: t.number)
    S = optuna.trial.TrialState
    assert [t.state for t in trials] == [S.COMPLETE, S.PRUNED, S.FAIL]
    assert trials[0].values == [8.0, 5.5] and trials[0].intermediate_values == {}


def test_trial_table_status_of_stopped_and_diverged_trials():
    from reports.tune_state import apply_state, tune_status
    stopped = {"phase": "search", "status": "TERMINATED", "final": False, "params": {}, "error": None,
               "last_result": {"step": 10, "fid": None, "fid_k": 90.0, "final": False}}
    assert tune_status(stopped) == "stopped"
    row = {"name": "trial-x"}
    apply_state(row, stopped)
    assert row.get("fid") is None and row["fid_k"] == 90.0
    # an old sweep whose stopped trials reported their FID-k under "fid": still no final fid
    old = {**stopped, "last_result": {"step": 10, "fid": 90.0, "fid_k": 90.0, "final": False}}
    row = {"name": "trial-y"}
    apply_state(row, old)
    assert row.get("fid") is None and row["fid_k"] == 90.0
    diverged = {**stopped, "last_result": {"diverged": True, "detail": "diverged: FID-k is nan at step 10",
                                           "final": False}}
    row = {"name": "trial-z"}
    apply_state(row, diverged)
    assert row["status"] == "error" and row["detail"] == "diverged: FID-k is nan at step 10"
