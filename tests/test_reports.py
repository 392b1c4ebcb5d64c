"""reports/: statistics against hand computations, the best row, paper columns, partial sweeps,
MLflow round trip, the CLI, and ``check_report_outputs`` for a real sweep (tests/test_search.py
calls it after its smoke sweep)."""
import glob
import html
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from reports import build_report
from reports.records import load_sweep, trials_frame
from reports.tables import config_table, display_config_table, format_mean_ci, mean_ci

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T_975_DF2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2), from a t table


def check_report_outputs(sweep_dir: str) -> None:
    """A built report is complete: self-contained HTML with every trial label and the feature set,
    and a Markdown summary with the configuration table."""
    html_path, md_path = os.path.join(sweep_dir, "report.html"), os.path.join(sweep_dir, "report.md")
    assert os.path.exists(html_path), html_path
    assert os.path.exists(md_path), md_path
    text = open(html_path, encoding="utf-8").read()
    external = [src for src in re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", text)
                if not src.startswith(("data:", "#"))]
    assert not external, f"external links in report.html: {external[:5]}"
    assert "<script" not in text.lower() or "src=" not in text.lower().split("<script", 1)[1].split(">", 1)[0]
    assert '<img src="data:image/png;base64,' in text
    labels, feature_sets = set(), set()
    for path in glob.glob(os.path.join(sweep_dir, "trials", "*", "metrics.json")):
        with open(path) as f:
            final = json.load(f)
        labels.add(final.get("label"))
        feature_sets.add(final.get("feature_set"))
    if os.path.exists(os.path.join(sweep_dir, "trials.csv")):
        table = pl.read_csv(os.path.join(sweep_dir, "trials.csv"), infer_schema_length=0)
        labels |= set(table["label"].to_list())
        feature_sets |= set(table["feature_set"].to_list())
    labels.discard(None), labels.discard("")
    feature_sets.discard(None), feature_sets.discard("")
    assert labels, "no trial labels found in the sweep"
    for label in labels:
        assert html.escape(label) in text, f"label {label!r} missing from report.html"
    assert feature_sets, "no feature set found in the sweep"
    for fs in feature_sets:
        assert fs in text, f"feature set {fs!r} missing from report.html"
    md = open(md_path, encoding="utf-8").read()
    assert re.search(r"^\| configuration \|", md, re.M), "report.md has no configuration table"
    assert re.search(r"^\|---\|", md, re.M)


# The report of a real smoke sweep is checked in tests/test_search.py (check_report_outputs),
# on the sweep that test runs end to end.


# -- synthetic records ----------------------------------------------------------------------------

def _trial(name, label, seed, fid, *, phase="search", baseline=None, routing="dtr", beta=0.8, alpha=4.0,
           weighting="vanilla", status="finished", model="DiT-T/4", dataset="fashion_mnist", image_size=32,
           feature_set="domain-fashion_mnist", steps=600, cfg_scale=1.0, samples=1000, **extra):
    return {"name": name, "trial": name.rsplit("-", 1)[-1], "phase": phase, "baseline": baseline, "label": label,
            "status": status, "seed": seed, "model": model, "dataset": dataset, "image_size": image_size,
            "routing": routing, "beta": beta, "alpha": alpha, "weighting": weighting, "steps": steps,
            "step": steps if status == "finished" else steps // 2, "fid": fid if status == "finished" else None,
            "is_mean": 2.0 + seed, "precision": 0.5, "recall": 0.4, "feature_set": feature_set,
            "cfg_scale": cfg_scale, "final_eval_samples": samples, "images_per_s": 100.0 + seed,
            "schedule": "linear", "num_timesteps": 1000, **extra}


def _beta_sweep_rows(**kw):
    rows = [_trial(f"baseline-vanilla-s{s}-v{s}", "vanilla", s, f, phase="baselines", baseline="vanilla",
                   routing="none", **kw) for s, f in enumerate((10.0, 12.0, 14.0))]
    rows += [_trial(f"trial-a{s}", "DTR", s, f, **kw) for s, f in enumerate((8.0, 9.0, 10.0))]
    rows += [_trial(f"trial-b{s}", "DTR", s, f, beta=b, **kw)  # one value, two float spellings
             for s, f, b in ((0, 11.0, 0.6), (1, 13.0, 0.6000000000000001))]
    return rows


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


def test_config_table_groups_seeds_and_highlights_best():
    trials = trials_frame(_beta_sweep_rows())
    table = config_table(trials, metric="fid", mode="min", baselines=["vanilla"])
    frame = table.frame
    assert table.varied == ["beta"]
    assert frame["name"].to_list() == ["vanilla (baseline)", "DTR β=0.8", "DTR β=0.6"]
    vanilla = frame.row(0, named=True)
    assert vanilla["beta"] is None and vanilla["fid_n"] == 3 and vanilla["fid_mean"] == 12.0
    assert vanilla["fid_ci"] == pytest.approx(T_975_DF2 * 2 / math.sqrt(3))
    assert frame["best"].to_list() == [False, True, False]
    assert frame["params"][0] == frame["params"][1] > 0  # masks add no parameters
    assert frame["gflops"][0] > 0
    headers, rows, best = display_config_table(table)
    assert best == [False, True, False]
    fid_col = headers.index("FID ↓")
    assert rows[0][fid_col].text == "12.00 ± 4.97"
    assert rows[1][0].text.endswith("★") and rows[1][0].bold and rows[1][fid_col].bold
    assert not rows[0][fid_col].bold


def test_best_follows_mode_max_and_n1_has_no_interval():
    rows = _beta_sweep_rows()[:4]  # vanilla x3 + one DTR seed
    table = config_table(trials_frame(rows), metric="is_mean", mode="max", baselines=["vanilla"])
    frame = table.frame
    assert frame.filter(pl.col("best"))["name"].to_list() == ["vanilla (baseline)"]  # IS 3.0 mean vs 2.0
    headers, cells, _ = display_config_table(table)
    assert cells[1][headers.index("FID ↓")].text == "8.000 (n=1)"


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


def test_figures_from_synthetic_records(tmp_path):
    import matplotlib.pyplot as plt

    from reports import figures as F
    rows = _beta_sweep_rows() + [_trial("trial-w0", "Min-SNR", 0, 9.5, routing="none", weighting="min_snr",
                                        min_snr_gamma=5.0),
                                 _trial("trial-p0", "P2", 0, 9.7, routing="none", weighting="p2", p2_gamma=1.0,
                                        p2_k=1.0)]
    usage = tmp_path / "expert_usage.npy"
    np.save(usage, np.full((1000, 3), 2 / 3))
    rows.append(_trial("trial-s0", "Switch-DiT", 0, 9.9, routing="learned", expert_usage=str(usage)))
    trials = trials_frame(rows)
    table = config_table(trials, baselines=["vanilla"])
    assert F.sweepable_params(table) == ["beta"]
    curves = pl.DataFrame({"name": ["trial-a0", "trial-a0", "trial-a1", "trial-a1"], "step": [100, 200, 100, 200],
                           "loss": [0.5, 0.4, 0.6, 0.45], "fid_k": [50.0, 40.0, None, 42.0]})
    for fig in (F.metric_vs_param(table, "beta"), F.convergence_curves(table, curves),
                F.routing_masks(table, trials), F.loss_weight_curves(trials), F.expert_usage(table, trials)):
        assert isinstance(fig, plt.Figure)
        assert F.figure_png(fig).startswith(b"\x89PNG")
    mask = F.mask_table(rows[3])
    assert mask.shape == (1000, 128) and (mask.sum(1) == int(128 * 0.8)).all()
    assert F.expert_usage(config_table(trials_frame(_beta_sweep_rows())), trials_frame(_beta_sweep_rows())) is None
    assert F.sample_grids(table, trials) is None  # no samples.png anywhere: skipped, not an error


# -- a partial sweep on disk ------------------------------------------------------------------------

def _config(name, sweep_dir, **fields):
    from trainers.presets import preset_config
    extra = {"space": "smoke", "budget": "smoke", "phase": fields.pop("phase", "search"),
             "baseline": fields.pop("baseline", "")}
    cfg = preset_config("smoke", steps=20, eval_every=10, eval_k=64, final_eval_samples=128, run_name=name,
                        run_dir=os.path.join(sweep_dir, "trials", name), extra=extra, **fields)
    return cfg.to_dict()


def _write_trial(sweep_dir, name, config, *, final=None, steps=20, fid_k=True, samples=False):
    run_dir = os.path.join(sweep_dir, "trials", name)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
        for step in range(1, steps + 1):
            f.write(json.dumps({"step": step, "loss": 1.0 / step, "images_per_s": 50.0 + step}) + "\n")
            if fid_k and step % 10 == 0:
                f.write(json.dumps({"step": step, "fid_k": 100.0 - step, "feature_set": "domain-fashion_mnist"}) + "\n")
    if final is not None:
        with open(os.path.join(run_dir, "metrics.json"), "w") as f:
            json.dump({"config": config, "label": final.pop("label"), **final}, f)
    else:
        ckpt = os.path.join(run_dir, "checkpoints", "step_0000010")
        os.makedirs(ckpt)
        with open(os.path.join(ckpt, "config.json"), "w") as f:
            json.dump(config, f)
    if samples:
        import matplotlib.pyplot as plt
        plt.imsave(os.path.join(run_dir, "samples.png"), np.random.default_rng(0).random((34, 34)), cmap="gray")
    return run_dir


def _tune_state(sweep_dir, phase, trials):
    """A minimal Ray Tune experiment_state file: [(trial_id, status, config, done, logdir), ...]."""
    os.makedirs(os.path.join(sweep_dir, phase), exist_ok=True)
    data = [[json.dumps({"trial_id": tid, "status": status, "config": config, "relative_logdir": logdir}),
             json.dumps({"last_result": {"final": done, "time_total_s": 12.5}})]
            for tid, status, config, done, logdir in trials]
    with open(os.path.join(sweep_dir, phase, "experiment_state-2026-01-01_00-00-00.json"), "w") as f:
        json.dump({"trial_data": data}, f)


@pytest.fixture
def partial_sweep(tmp_path):
    sweep_dir = str(tmp_path / "sweeps" / "smoke-smoke")
    os.makedirs(sweep_dir)
    final = {"fid": 150.0, "is_mean": 1.4, "precision": 0.1, "recall": 0.05, "feature_set": "domain-fashion_mnist",
             "num_samples": 128}
    vanilla = "baseline-vanilla-s0-v_00000"
    _write_trial(sweep_dir, vanilla, _config(vanilla, sweep_dir, routing="none", phase="baselines",
                                             baseline="vanilla"),
                 final={**final, "label": "vanilla"}, samples=True)
    _write_trial(sweep_dir, "trial-done1", _config("trial-done1", sweep_dir, routing="dtr", beta=0.75),
                 final={**final, "fid": 140.0, "label": "DTR"}, samples=True)
    # running: a checkpoint config and half the steps, this process's pid
    run_dir = _write_trial(sweep_dir, "trial-run1", _config("trial-run1", sweep_dir, routing="dtr", beta=0.6),
                           steps=10)
    with open(os.path.join(run_dir, "worker.pid"), "w") as f:
        f.write(str(os.getpid()))
    # errored (Tune says so) with no metrics at all
    _write_trial(sweep_dir, "trial-err1", _config("trial-err1", sweep_dir, routing="dtr", beta=0.9), steps=3,
                 fid_k=False)
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
    assert pending["label"] == "DTR" and pending["beta"] == 0.55  # config rebuilt from Tune's params
    run = records.trials.filter(pl.col("name") == "trial-run1").row(0, named=True)
    assert run["step"] == 10 and run["fid_k"] == 90.0 and run["label"] == "DTR"
    assert records.curves.filter(pl.col("fid_k").is_not_null()).height == 5  # 2 + 2 finished, 1 running
    assert records.meta["space"] == "smoke" and records.meta["budget"] == "smoke"


def test_partial_sweep_report_shows_unfinished_trials(partial_sweep):
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
    assert os.path.exists(os.path.join(partial_sweep, "report_files", "convergence.png"))


def test_report_of_an_empty_sweep_dir(tmp_path):
    sweep_dir = tmp_path / "sweeps" / "nothing-yet"
    (sweep_dir / "trials").mkdir(parents=True)
    paths = build_report(str(sweep_dir), log_to_mlflow=False)
    assert "No trials yet" in open(paths["html"], encoding="utf-8").read()


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
    child = client.create_run(exp, run_name="trial-remote1", tags={"mlflow.parentRunId": pid, "method": "DTR",
                                                                   "feature_set": "domain-fashion_mnist"})
    for k, v in {"routing": "dtr", "beta": "0.7", "alpha": "4.0", "model": "DiT-T/4", "seed": "0",
                 "weighting": "vanilla", "steps": "20"}.items():
        client.log_param(child.info.run_id, k, v)
    client.log_metric(child.info.run_id, "fid", 120.0, step=20)
    client.log_metric(child.info.run_id, "fid_k", 130.0, step=10)
    client.set_terminated(child.info.run_id, "FINISHED")
    with open(os.path.join(partial_sweep, "mlflow_parent_run_id"), "w") as f:
        f.write(pid)

    records = load_sweep(partial_sweep, tracking_uri=uri)
    remote = records.trials.filter(pl.col("name") == "trial-remote1").row(0, named=True)
    assert (remote["status"], remote["fid"], remote["beta"], remote["source"]) == ("finished", 120.0, 0.7, "mlflow")
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


def test_bench_trend_figure_marks_regressions():
    import datetime as dt

    from reports.figures import bench_trend
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    history = pl.DataFrame({
        "time": [t0 + dt.timedelta(days=i) for i in range(3)], "metric": ["dtr_step_ratio"] * 3,
        "mean": [1.01, 1.02, 1.30], "band": [0.03, 0.03, 0.03], "status": ["new", "ok", "REGRESSION"]})
    fig = bench_trend(history)
    assert fig is not None and len(fig.axes) == 1
    ax = fig.axes[0]
    reds = [line for line in ax.get_lines() if line.get_color() == "red"]
    assert len(reds) == 1 and list(reds[0].get_ydata()) == [1.30]
    assert bench_trend(history.clear()) is None
