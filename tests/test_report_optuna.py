"""Optuna's views in the report (reports/optuna_views.py), from a real Optuna study in the sweep's
journal: parameter importance, parallel coordinates and contour (two parameters) or slice (one),
shown from 3 COMPLETE trials on; PRUNED trials are not counted."""
import os

import optuna
from report_fixtures import _config, _write_trial

from reports import build_report
from reports.optuna_views import param_importances

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(sweep_dir, n_complete, params=("beta", "alpha"), name="smoke-smoke"):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    storage = JournalStorage(JournalFileBackend(os.path.join(sweep_dir, "optuna_journal.log")))
    study = optuna.create_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=1))
    for i in range(n_complete + 1):
        trial = study.ask()
        beta = trial.suggest_float("beta", 0.3, 0.99)
        alpha = trial.suggest_float("alpha", 0.5, 6.0) if "alpha" in params else 0.0
        if i == n_complete:  # one ASHA stopped: PRUNED with its FID-k, not counted
            trial.report(500.0, 10)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:  # FID depends on beta strongly, on alpha barely
            study.tell(trial, 100.0 + 200.0 * (beta - 0.7) ** 2 + 0.1 * alpha)
    return study


def _sweep(tmp_path):
    sweep_dir = str(tmp_path / "sweeps" / "smoke-smoke")
    _write_trial(sweep_dir, "trial-a", _config("trial-a", sweep_dir, routing="dtr", beta=0.6),
                 final={"fid": 120.0, "label": "DTR", "feature_set": "domain-fashion_mnist"})
    return sweep_dir


def test_importance_views_from_three_complete_trials(tmp_path, monkeypatch):
    monkeypatch.setenv("DTR_RUNS_DIR", str(tmp_path / "runs"))
    sweep_dir = _sweep(tmp_path)
    study = _study(sweep_dir, 12)
    importances = param_importances(study, "fid")
    assert set(importances) == {"beta", "alpha"} and abs(sum(importances.values()) - 1.0) < 1e-9
    assert importances["beta"] > importances["alpha"]
    html = open(build_report(sweep_dir, log_to_mlflow=False)["html"], encoding="utf-8").read()
    files = set(os.listdir(os.path.join(sweep_dir, "report_files")))
    assert {"param-importance.png", "parallel-coordinate.png", "contour.png"} <= files and "slice.png" not in files
    assert '<h2 id="param-importance">Parameter importance</h2>' in html and "12 COMPLETE trials" in html
    assert "optuna-dashboard " + os.path.join(sweep_dir, "optuna_journal.log") in html


def test_no_views_below_three_complete_trials_and_slice_for_one_parameter(tmp_path, monkeypatch):
    monkeypatch.setenv("DTR_RUNS_DIR", str(tmp_path / "runs"))
    sweep_dir = _sweep(tmp_path)
    _study(sweep_dir, 2)
    html = open(build_report(sweep_dir, log_to_mlflow=False)["html"], encoding="utf-8").read()
    assert "Parameter importance" not in html and "Parallel coordinates" not in html
    os.remove(os.path.join(sweep_dir, "optuna_journal.log"))
    _study(sweep_dir, 3, params=("beta",))
    build_report(sweep_dir, log_to_mlflow=False)
    files = set(os.listdir(os.path.join(sweep_dir, "report_files")))
    assert {"param-importance.png", "parallel-coordinate.png", "slice.png"} <= files and "contour.png" not in files
