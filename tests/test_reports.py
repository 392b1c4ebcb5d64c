"""reports/: statistics against hand computations, the best row, paper columns, figure contents
against values computed here, partial sweeps, the driver's trial table, MLflow round trip, the
benchmark history, the CLI, the import graph, and ``check_report_outputs`` for a real sweep
(tests/test_search.py calls it after its smoke sweep; it lives in tests/report_fixtures.py)."""
import json
import math
import os
import subprocess
import sys

import polars as pl
import pytest
from report_fixtures import (
    ROOT,
    T_975_DF2,
    _beta_sweep_rows,
    _config,
    _trial,
    _tune_state,
    _write_trial,
    check_report_outputs,
)

from reports import build_report
from reports.cells import display_config_table, format_mean_ci
from reports.records import load_sweep, trials_table
from reports.schema import trials_frame
from reports.stats import mean_ci
from reports.tables import config_table


def test_mean_ci_matches_hand_computation():
    mean, half, n = mean_ci([10.0, 12.0, 14.0])
    # s = 2, se = 2 / sqrt(3), t_{0.975, 2} = 4.3027 -> 4.9683
    assert (mean, n) == (12.0, 3)
    assert half == pytest.approx(T_975_DF2 * 2.0 / math.sqrt(3.0), rel=1e-9)
    assert half == pytest.approx(4.96827, abs=1e-5)
    assert mean_ci([7.5]) == (7.5, None, 1)
    assert mean_ci([None, float("nan")]) == (None, None, 0)
    mean, half, n = mean_ci([11.0, 13.0])
    assert half == pytest.approx(12.706204736174698)  # s = sqrt(2), se = 1, t_{0.975, 1}
    assert format_mean_ci(12.0, 4.968, 3) == "12.00 ± 4.97"
    assert format_mean_ci(7.5, None, 1) == "7.500 (n=1)"
    assert format_mean_ci(None, None, 0) == "—"


def test_config_table_groups_seeds_and_stars_nothing_within_seed_noise():
    trials = trials_frame(_beta_sweep_rows())
    table = config_table(trials, metric="fid", mode="min", baselines=["vanilla"])
    frame = table.frame
    assert table.varied == ["beta"]
    assert frame["name"].to_list() == ["vanilla (baseline)", "DTR β=0.8", "DTR β=0.6"]
    vanilla = frame.row(0, named=True)
    assert vanilla["beta"] is None and vanilla["fid_n"] == 3 and vanilla["fid_mean"] == 12.0
    assert vanilla["fid_ci"] == pytest.approx(T_975_DF2 * 2 / math.sqrt(3))
    # DTR β=0.8 is 3 below vanilla, inside the pooled band ±3.25 (tests/test_report_noise.py): no star
    assert frame["best"].to_list() == [False, False, False]
    assert frame["params"][0] == frame["params"][1] > 0  # masks add no parameters
    assert frame["gflops"][0] > 0
    headers, rows, best = display_config_table(table)
    assert best == [False, False, False]
    fid_col = headers.index("FID ↓")
    assert rows[0][fid_col].text == "12.00 ± 4.97"
    assert not any(r[0].text.endswith("★") or any(c.bold for c in r) for r in rows)
    assert [r[headers.index("Δ vs vanilla (95% CI)")].text for r in rows] == [
        "reference", "not shown (within seed noise)", "not shown (within seed noise)"]


def test_best_follows_mode_max_and_n1_has_no_interval():
    rows = _beta_sweep_rows()[:4]  # vanilla x3 + one DTR seed
    for row, value in zip(rows, (10.0, 10.2, 9.8, 2.0)):
        row["is_mean"] = value
    table = config_table(trials_frame(rows), metric="is_mean", mode="max", baselines=["vanilla"])
    frame = table.frame
    # vanilla (IS 10.0) is the reference and the top: compared with the runner-up DTR (IS 2.0), far
    # outside the band t_{.975,2} * 0.2 * sqrt(1/3 + 1) = 0.99
    assert frame.filter(pl.col("best"))["name"].to_list() == ["vanilla (baseline)"]
    headers, cells, _ = display_config_table(table)
    assert cells[1][headers.index("FID ↓")].text == "8.000 (n=1)"
    assert cells[1][headers.index("Δ vs vanilla (95% CI)")].text == "-8.00 ± 0.99 *"


def test_paper_column_for_a_matching_setting():
    paper = dict(model="DiT-L/2", dataset="latents", image_size=32, feature_set="inception", steps=400_000,
                 cfg_scale=1.5, samples=50_000)
    rows = [_trial("baseline-vanilla-s0-v0", "vanilla", 0, 12.9, phase="baselines", baseline="vanilla",
                   routing="none", **paper),
            _trial("baseline-R-TR-s0-r0", "R-TR", 0, 16.0, phase="baselines", baseline="R-TR", routing="random",
                   **paper),
            _trial("trial-d0", "DTR", 0, 9.1, **paper),
            _trial("trial-m0", "DTR + Min-SNR", 0, 8.4, weighting="min_snr", **paper)]
    table = config_table(trials_frame(rows), baselines=["vanilla", "R-TR"])
    frame = table.frame
    assert frame["paper_fid"].to_list() == [12.59, 16.18, 8.24, 8.90]
    assert frame["paper_is_mean"].to_list() == [134.60, 105.88, 186.02, 156.48]
    assert all(frame["paper_match"].to_list())
    assert len(table.paper_notes) == 1 and "Setting matches" in table.paper_notes[0][1]
    headers, cells, _ = display_config_table(table)
    assert headers[headers.index("FID ↓") + 1] == "paper FID"
    assert cells[0][headers.index("paper FID")].text == "12.59 [a]"


def test_paper_column_for_laptop_sweeps_says_settings_differ():
    table = config_table(trials_frame(_beta_sweep_rows()), baselines=["vanilla"])
    assert table.frame["paper_fid"].to_list() == [12.59, 8.90, None]  # beta 0.6 is not in the paper
    assert table.frame["paper_match"].to_list() == [False, False, False]
    (marker, note), = table.paper_notes
    assert "Settings differ" in note and "model DiT-T/4 (paper DiT-L/2)" in note and "domain-fashion_mnist" in note


def test_alpha_sweep_refers_to_the_alpha_ablation():
    rows = [_trial(f"trial-a{i}", "DTR", 0, 9.0 + i, alpha=a) for i, a in enumerate((1.0, 2.0, 4.5))]
    table = config_table(trials_frame(rows))
    assert table.varied == ["alpha"]
    assert table.frame.sort("alpha")["paper_fid"].to_list() == [10.31, 9.39, None]
    assert "Table 4" in table.paper_notes[0][1]


def test_multi_expert_rows_count_n_models_and_match_app_d():
    rows = [_trial("baseline-vanilla-s0-v0", "vanilla", 0, 12.0, phase="baselines", baseline="vanilla",
                   routing="none"),
            _trial("trial-e0", "vanilla + 4 experts", 0, 11.0, routing="none", multi_expert_n=4)]
    table = config_table(trials_frame(rows), baselines=["vanilla"])
    assert table.varied == ["multi_expert_n"]
    frame = table.frame
    assert frame["paper_fid"].to_list() == [12.59, 9.48]
    assert frame["params"][1] == 4 * frame["params"][0] and frame["gflops"][1] == frame["gflops"][0]
    assert "App. D" in table.paper_notes[0][1]


@pytest.fixture
def partial_sweep(tmp_path):
    sweep_dir = str(tmp_path / "sweeps" / "smoke-smoke")
    os.makedirs(sweep_dir)
    final = {"fid": 150.0, "is_mean": 1.4, "precision": 0.1, "recall": 0.05, "feature_set": "domain-fashion_mnist",
             "num_samples": 128}
    vanilla = "baseline-vanilla-s0-v_00000"
    # finished before config.json existed: the config only in metrics.json
    _write_trial(sweep_dir, vanilla, _config(vanilla, sweep_dir, routing="none", phase="baselines",
                                             baseline="vanilla"), config_in=("metrics",),
                 final={**final, "label": "vanilla"}, samples=True)
    _write_trial(sweep_dir, "trial-done1", _config("trial-done1", sweep_dir, routing="dtr", beta=0.75),
                 config_in=("run_dir", "metrics", "checkpoint"), final={**final, "fid": 140.0, "label": "DTR"},
                 samples=True)
    # running: config.json and half the steps (no checkpoint yet), this process's pid
    run_dir = _write_trial(sweep_dir, "trial-run1", _config("trial-run1", sweep_dir, routing="dtr", beta=0.6),
                           steps=10)
    with open(os.path.join(run_dir, "worker.pid"), "w") as f:
        f.write(str(os.getpid()))
    # errored (Tune says so) with no metrics at all; its config only in a checkpoint (an older run)
    _write_trial(sweep_dir, "trial-err1", _config("trial-err1", sweep_dir, routing="dtr", beta=0.9), steps=3,
                 config_in=("checkpoint",), fid_k=False)
    os.makedirs(os.path.join(sweep_dir, "search", "run_trial_err1_3"))
    with open(os.path.join(sweep_dir, "search", "run_trial_err1_3", "error.txt"), "w") as f:
        f.write("Traceback ...\nRuntimeError: loss is NaN at step 3\n")
    # an empty trial directory (the worker died before writing anything)
    os.makedirs(os.path.join(sweep_dir, "trials", "trial-empty1"))
    _tune_state(sweep_dir, "baselines", [("v_00000", "TERMINATED", {"baseline": "vanilla", "seed": 0}, True, "x")])
    _tune_state(sweep_dir, "search", [("done1", "TERMINATED", {"beta": 0.75}, True, "a"),
                                      ("run1", "RUNNING", {"beta": 0.6}, False, "b"),
                                      ("err1", "ERROR", {"beta": 0.9}, False, "run_trial_err1_3"),
                                      ("pend1", "PENDING", {"beta": 0.55}, False, "c")])
    return sweep_dir


def test_partial_sweep_records(partial_sweep):
    records = load_sweep(partial_sweep, use_mlflow=False)
    status = dict(zip(records.trials["name"], records.trials["status"]))
    assert status == {"baseline-vanilla-s0-v_00000": "finished", "trial-done1": "finished", "trial-run1": "running",
                      "trial-err1": "error", "trial-empty1": "stopped", "trial-pend1": "running"}
    err = records.trials.filter(pl.col("name") == "trial-err1").row(0, named=True)
    assert "loss is NaN" in err["detail"] and err["fid"] is None and err["beta"] == 0.9
    pending = records.trials.filter(pl.col("name") == "trial-pend1").row(0, named=True)
    # no config exists before a trial starts: Tune's chosen parameter is shown, nothing is rebuilt
    assert pending["label"] == "unknown (no config yet)" and pending["beta"] == 0.55 and pending["source"] == "tune"
    assert "trial-pend1" not in records.configs
    run = records.trials.filter(pl.col("name") == "trial-run1").row(0, named=True)
    assert run["step"] == 10 and run["fid_k"] == 90.0 and run["label"] == "DTR" and run["beta"] == 0.6
    assert run["images_per_s"] == 56.0  # median of 52..60 (the first, warm-up step left out)
    # the config as each run recorded it: config.json, metrics.json, a checkpoint's config.json
    assert [records.configs[n]["beta"] for n in ("trial-run1", "trial-done1", "trial-err1")] == [0.6, 0.75, 0.9]
    assert records.configs["baseline-vanilla-s0-v_00000"]["routing"] == "none"
    assert records.configs["trial-empty1"] == {}
    assert records.curves.filter(pl.col("fid_k").is_not_null()).height == 5  # 2 + 2 finished, 1 running
    assert records.meta["space"] == "smoke" and records.meta["budget"] == "smoke"


def _markdown_table(md: str, first_header: str) -> list[dict]:
    """The rows of the Markdown table whose first header is ``first_header``, as dicts."""
    def cells(line):
        return [c.strip().replace("**", "") for c in line.strip().strip("|").split(" | ")]

    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    headers, rows = cells(lines[start]), []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(headers, cells(line))))
    return rows


def test_partial_sweep_report_shows_unfinished_trials(partial_sweep, tmp_path, monkeypatch):
    monkeypatch.setenv("DTR_RUNS_DIR", str(tmp_path / "runs"))  # no benchmark history here
    paths = build_report(partial_sweep, log_to_mlflow=False)
    assert paths["mlflow_logged"] is False
    check_report_outputs(partial_sweep)
    text = open(paths["html"], encoding="utf-8").read()
    for name in ("trial-run1", "trial-err1", "trial-empty1", "trial-pend1"):
        assert name in text
    assert "loss is NaN at step 3" in text
    assert "4 of 6 trials are not finished" in text
    md = open(paths["markdown"], encoding="utf-8").read()
    assert "trial-err1" in md and "| error |" in md.replace("**", "")
    # the configuration table holds the fixture's numbers: one finished seed each, no interval
    table = {(r["configuration"], r["β"]): r for r in _markdown_table(md, "configuration")}
    assert table[("vanilla (baseline)", "—")]["FID ↓"] == "150.0 (n=1)"
    done = table[("DTR", "0.75")]  # one seed each: no noise estimate, nothing is starred
    assert done["FID ↓"] == "140.0 (n=1)" and done["status"] == "1 finished"
    assert not any("★" in r["configuration"] for r in table.values())
    assert "no seed repeats: differences cannot be told from seed noise" in md
    assert "no seed repeats: differences cannot be told from seed noise" in text
    # every FID-k of the fixture is 100 - step: DTR's reaches vanilla's final FID-k (80) at step 20
    assert done["steps to vanilla's FID-k"] == "20" and done["Label acc. ↑"] == "—"
    assert table[("DTR", "0.9")]["status"] == "1 error" and table[("DTR", "0.9")]["FID ↓"] == "—"
    assert table[("DTR", "0.6")]["status"] == "1 running"
    # the figures this sweep has data for, and only those: curves, DTR's three masks, two sample grids
    assert sorted(os.listdir(os.path.join(partial_sweep, "report_files"))) == [
        "convergence.png", "masks.png", "samples.png"]
    assert text.count("<figure><img") == 2 + 2  # convergence, masks + the two trials' own sample PNGs


def test_report_of_an_empty_sweep_dir(tmp_path):
    sweep_dir = tmp_path / "sweeps" / "nothing-yet"
    (sweep_dir / "trials").mkdir(parents=True)
    paths = build_report(str(sweep_dir), log_to_mlflow=False)
    assert "No trials yet" in open(paths["html"], encoding="utf-8").read()


def test_driver_trial_table_takes_tunes_word(partial_sweep):
    """platform/sweep_summary.py saves ``trials_table(sweep_dir, grids)`` as trials.csv: the
    same rows as the report's, with the Tuners' results as the word on each trial."""
    from types import SimpleNamespace as Result
    grids = {"baselines": [Result(metrics={"trial_id": "v_00000", "final": True, "fid": 150.0,
                                           "time_total_s": 30.0}, error=None, config={"baseline": "vanilla"})],
             "search": [Result(metrics={"trial_id": "done1", "final": True, "fid": 140.0, "time_total_s": 40.0},
                               error=None, config={"beta": 0.75}),
                        # ASHA stopped it at its first FID-k (its worker has not exited yet)
                        Result(metrics={"trial_id": "run1", "final": False, "step": 10, "fid": None, "fid_k": 90.0},
                               error=None, config={"beta": 0.6}),
                        Result(metrics={"trial_id": "err1", "final": False}, config={"beta": 0.9},
                               error=RuntimeError("Traceback ...\nRuntimeError: loss is NaN at step 3"))]}
    table = trials_table(partial_sweep, grids)
    rows = {r["name"]: r for r in table.to_dicts()}
    # trial-empty1: a directory Tune knows nothing of (an interrupted driver's) is not a trial of the sweep
    assert set(rows) == {"baseline-vanilla-s0-v_00000", "trial-done1", "trial-run1", "trial-err1", "trial-pend1"}
    assert {n: r["status"] for n, r in rows.items()} == {
        "baseline-vanilla-s0-v_00000": "finished", "trial-done1": "finished", "trial-run1": "stopped",
        "trial-err1": "error", "trial-pend1": "running"}
    run = rows["trial-run1"]
    # stopped: its last FID-k (the intermediate value Optuna was told), no final FID
    assert (run["fid"], run["fid_k"], run["step"], run["beta"], run["label"]) == (None, 90.0, 10, 0.6, "DTR")
    assert rows["trial-err1"]["detail"] == "RuntimeError: loss is NaN at step 3"
    assert rows["trial-done1"]["wall_s"] == 40.0 and rows["trial-done1"]["run_dir"].endswith("trials/trial-done1")
    assert table.columns == list(trials_frame([]).columns)  # one schema for trials.csv and the report
    # what the driver prints: the same table through reports.console (unstarted and errored rows too)
    from reports.console import console_summary
    text, best = console_summary(table, metric="fid", mode="min", baselines=["vanilla"])
    assert best is None and "baseline vanilla: mean 150.0" in text and "best: No configuration" in text
    assert "null" not in text and "1 error" in text


# -- MLflow --------------------------------------------------------------------------------------

def test_mlflow_records_and_artifacts(partial_sweep, tmp_path, monkeypatch):
    import mlflow
    monkeypatch.setenv("DTR_RUNS_DIR", str(tmp_path / "runs"))
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("sweep-smoke-smoke", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(exp, run_name="sweep-smoke-smoke", tags={"sweep": "true"})
    pid = parent.info.run_id
    client.log_param(pid, "space", "smoke")
    # a trial only MLflow knows: its config is the dtr.config tag, as trainers/training/tracking.py logs it
    config = _config("trial-remote1", partial_sweep, routing="dtr", beta=0.7)
    child = client.create_run(exp, run_name="trial-remote1", tags={
        "mlflow.parentRunId": pid, "method": "DTR", "feature_set": "domain-fashion_mnist",
        "dtr.config": json.dumps(config, sort_keys=True)})
    for k in ("routing", "beta", "model", "seed"):  # params are for MLflow's views; they are not read back
        client.log_param(child.info.run_id, k, str(config[k]))
    client.log_metric(child.info.run_id, "fid", 120.0, step=20)
    client.log_metric(child.info.run_id, "fid_k", 130.0, step=10)
    client.set_terminated(child.info.run_id, "FINISHED")
    with open(os.path.join(partial_sweep, "mlflow_parent_run_id"), "w") as f:
        f.write(pid)

    records = load_sweep(partial_sweep, tracking_uri=uri)
    remote = records.trials.filter(pl.col("name") == "trial-remote1").row(0, named=True)
    assert (remote["status"], remote["fid"], remote["beta"], remote["source"]) == ("finished", 120.0, 0.7, "mlflow")
    assert (remote["phase"], remote["steps"], remote["sampler"]) == ("search", config["steps"], config["sampler"])
    assert records.configs["trial-remote1"] == config
    assert records.curves.filter(pl.col("name") == "trial-remote1")["fid_k"].to_list() == [130.0]

    paths = build_report(partial_sweep, tracking_uri=uri)
    assert paths["mlflow_logged"] is True
    logged = {a.path for a in client.list_artifacts(pid, "report")}
    assert {"report/report.html", "report/report.md"} <= logged
    assert "trial-remote1" in open(paths["html"], encoding="utf-8").read()

    missing = "sqlite:///" + str(tmp_path / "absent.db")
    assert build_report(partial_sweep, tracking_uri=missing)["mlflow_logged"] is False
    assert not os.path.exists(tmp_path / "absent.db")  # an unreachable store is not created


# -- CLI ---------------------------------------------------------------------------------------------

def test_cli_bad_path_is_one_error_line(tmp_path):
    env = {**os.environ, "DTR_RUNS_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "reports", str(tmp_path / "nope")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")


def test_cli_resolves_a_bare_sweep_name(partial_sweep, monkeypatch, capsys):
    from reports.__main__ import main
    runs_dir = os.path.dirname(os.path.dirname(partial_sweep))
    monkeypatch.setenv("DTR_RUNS_DIR", runs_dir)
    assert main(["smoke-smoke", "--no-mlflow"]) == 0
    assert os.path.join(partial_sweep, "report.html") in capsys.readouterr().out
    assert main(["not-a-sweep", "--no-mlflow"]) == 2


# -- the benchmark history --------------------------------------------------------------------------


def test_reports_import_neither_the_driver_nor_the_trainable():
    """reports/ is below platform/ (platform.sweep_summary imports it) and reads configs from the
    records: none of its modules may import platform, the bench, search-space resolution or the
    Tune trainable (a clean interpreter, every module of the package imported)."""
    code = ("import importlib, pkgutil, sys, reports\n"
            "for m in pkgutil.walk_packages(reports.__path__, 'reports.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('platform.', 'trainers.bench', "
            "'trainers.training.tune_trainable', 'search_spaces.resolve'))))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
