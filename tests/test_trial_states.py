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


def test_progress_line_and_parent_run_metrics():
    from platform.sweep_progress import progress, progress_metrics, progress_text
    p = progress(["TERMINATED", "RUNNING", "PENDING", "ERROR", "PENDING"], total=8, elapsed_s=120.0, seen=2)
    assert p == {"done": 2, "running": 1, "queued": 5, "eta_s": 360.0}  # 120 s / 2 ended x 6 left
    assert progress_text("search", 8, p) == "[sweep] search: 2/8 trials done, 1 running, 5 queued; ETA ~6 min"
    assert progress_metrics("search", p) == {"trials_done": 2, "trials_running": 1, "trials_queued": 5,
                                             "eta_s": 360.0}
    end = progress(["TERMINATED"] * 3, total=3, elapsed_s=50.0, seen=1)
    assert end == {"done": 3, "running": 0, "queued": 0, "eta_s": 0.0}
    assert progress_text("baselines", 3, end) == "[sweep] baselines: 3/3 trials done, 0 running, 0 queued"
    assert set(progress_metrics("baselines", end)) == {"baselines_trials_done", "baselines_trials_running",
                                                       "baselines_trials_queued", "baselines_eta_s"}


def test_a_restored_search_takes_the_raised_trial_count_and_concurrency(tmp_path, monkeypatch):
    """What a resumed sweep with --trials 3 --max-concurrent 2 does to a search phase Tune saved
    with 2 trials, 1 at a time: the restored generator asks for one more trial, two at once."""
    import json

    from ray.tune.search import ConcurrencyLimiter

    from platform.resumable_search import ResumableSearch
    searcher, _ = _searcher(tmp_path, "fid", "min")
    settings = tmp_path / "sweep.json"
    saved = ResumableSearch(ConcurrencyLimiter(searcher, max_concurrent=1), str(settings))
    saved.set_state({"counter": 2, "total_samples": 2, "finished": False, "experiment": None})
    assert saved.is_finished()
    (tmp_path / "state").mkdir()
    saved.save_to_dir(str(tmp_path / "state"), session_str="s")
    settings.write_text(json.dumps({"trials": 3, "max_concurrent": 2}))
    searcher2, _ = _searcher(tmp_path, "fid", "min")
    restored = ResumableSearch(ConcurrencyLimiter(searcher2, max_concurrent=1), str(settings))
    restored.restore_from_dir(str(tmp_path / "state"))
    assert (restored.total_samples, restored.limiter.max_concurrent, restored.is_finished()) == (3, 2, False)
    restored.apply(1, None)  # a lower count never takes trials back
    assert restored.total_samples == 3
    # a sweep directory moved since it started: the resuming driver names its sweep.json
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps({"trials": 5, "max_concurrent": 3}))
    monkeypatch.setattr(ResumableSearch, "settings", str(moved))
    again = ResumableSearch(ConcurrencyLimiter(_searcher(tmp_path, "fid", "min")[0], max_concurrent=1), str(settings))
    again.restore_from_dir(str(tmp_path / "state"))
    assert (again.total_samples, again.limiter.max_concurrent) == (5, 3)


def test_the_best_trial_line_shows_the_searched_parameters_that_apply(tmp_path):
    import polars as pl

    from platform.sweep_summary import searched_lines, with_searched_columns
    table = pl.DataFrame({"name": ["baseline-vanilla-s0-a", "trial-b"], "label": ["vanilla", "DTR"],
                          "status": ["finished", "finished"], "fid": [40.0, 50.0], "routing": ["none", "dtr"],
                          "beta": [0.8, 0.75], "weighting": ["vanilla", "vanilla"], "run_dir": ["", ""]})
    assert searched_lines(table, ["beta"], str(tmp_path)) == [
        "best trial by fid: 40, baseline-vanilla-s0-a (vanilla) with no searched parameters"]
    flipped = table.with_columns(pl.Series("fid", [50.0, 40.0]))
    assert searched_lines(flipped, ["beta"], str(tmp_path)) == ["best trial by fid: 40, trial-b (DTR) with beta=0.75"]
    # a searched field the trial table does not carry comes from each trial's config.json
    run = tmp_path / "trial-b"
    run.mkdir()
    (run / "config.json").write_text('{"ema_decay": 0.999}')
    wider = with_searched_columns(table.with_columns(pl.Series("run_dir", ["", str(run)])), ["beta", "ema_decay"])
    assert wider["ema_decay"].to_list() == [None, 0.999]


def test_the_sample_grid_is_the_evaluation_samples_laid_out_like_samples_png():
    import torch

    from trainers.evaluation.sample_grid import grid_array
    samples = torch.zeros(64, 1, 32, 32)
    samples[9] = 1.0  # row 1, column 1 of the grid: white
    grid = grid_array(samples)
    assert grid.shape == (274, 274, 3) and grid.dtype.name == "uint8"  # 8 x (32 + 2) + 2
    assert (grid[36:68, 36:68] == 255).all() and (grid[2:34, 2:34] == 128).all()
    # the same pixels as the run's samples.png (torchvision's save_image), for any count and channels
    import io

    import numpy as np
    from PIL import Image
    from torchvision.utils import save_image
    for shape in ((64, 1, 32, 32), (13, 3, 16, 16)):
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2
        png = io.BytesIO()
        save_image(x, png, format="png", nrow=8, normalize=True, value_range=(-1, 1))
        assert np.array_equal(np.array(Image.open(png).convert("RGB")), grid_array(x))


def test_a_trial_resumed_past_its_last_fid_k_step_still_reports_fid_k(tmp_path):
    """Its final report is the first of the retried process: without the FID-k of its metrics.jsonl
    Tune's strict metric check for ASHA would end the whole sweep."""
    import json

    from trainers.config import RunConfig
    from trainers.training.tune_trainable import _Reporter
    run_dir = tmp_path / "trial-x"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"step": 10, "loss": 0.5}, {"step": 30, "fid_k": 88.5}, {"step": 40, "loss": 0.4})))
    sent = []
    report = _Reporter(RunConfig(run_dir=str(run_dir)), lambda metrics, checkpoint: sent.append(metrics))
    report({"step": 60, "fid": 80.0, "final": True}, None)
    assert (sent[0]["fid"], sent[0]["fid_k"]) == (80.0, 88.5)
    fresh = _Reporter(RunConfig(run_dir=str(tmp_path / "new")), lambda metrics, checkpoint: sent.append(metrics))
    assert fresh.last_fid_k is None
