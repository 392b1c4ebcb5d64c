"""Time to vanilla's FID-k (step and seconds, from logged wall_s or estimated from the throughput)
on synthetic curves, its columns in the trial and configuration tables, and the final
``label_accuracy`` metric from metrics.json to the configuration table."""
import polars as pl
import pytest
from report_fixtures import _config, _trial, _write_trial

from reports.cells import display_config_table, display_trials
from reports.records import load_sweep, trials_table
from reports.schema import curves_frame, trials_frame
from reports.table_notes import table_notes
from reports.tables import config_table
from reports.time_to_quality import reference_fid_k, seconds_source, time_to_quality, with_time_to_quality


def _loss(name, step, ips=None, wall=None):
    return {"name": name, "step": step, "loss": 0.1, "images_per_s": ips, "wall_s": wall}


def _fid(name, step, value):
    return {"name": name, "step": step, "fid_k": value}


def test_time_to_quality_with_logged_wall_seconds():
    curves = curves_frame([*(_loss("a", s, 100.0, wall=s / 2) for s in (10, 20, 30, 40)),
                           _fid("a", 20, 50.0), _fid("a", 40, 30.0),
                           *(_loss("b", s, 100.0, wall=s) for s in (10, 20)), _fid("b", 20, 41.0),
                           _loss("c", 10, 100.0, wall=1.0)])
    # a: first FID-k <= 40 at step 40, logged 20 s; b never gets there; c has no FID-k curve
    assert time_to_quality(curves, 40.0) == {"a": (40, 20.0), "b": (None, None)}
    assert time_to_quality(curves, 50.0)["a"] == (20, 10.0)  # at or below counts
    assert seconds_source(curves) == "wall_s"


def test_time_to_quality_estimated_from_the_throughput():
    # images_per_s of a loss line is the throughput of the steps since the previous loss line
    curves = curves_frame([_loss("a", 10, 100.0), _loss("a", 20, 50.0), _loss("a", 30, 100.0),
                           _fid("a", 20, 35.0), _fid("a", 25, 30.0)])
    batch = {"a": 10}
    # steps 1-10: 10 * 10 / 100 = 1 s; steps 11-20: 10 * 10 / 50 = 2 s
    assert time_to_quality(curves, 35.0, batch) == {"a": (20, pytest.approx(3.0))}
    # step 25, between two loss lines: halfway through the third window (1 s long)
    assert time_to_quality(curves, 32.0, batch) == {"a": (25, pytest.approx(3.5))}
    assert time_to_quality(curves, 32.0) == {"a": (25, None)}  # no batch size: no estimate
    assert seconds_source(curves) == "images_per_s"


def _ttq_trials():
    rows = [_trial(f"baseline-vanilla-s{s}-v{s}", "vanilla", s, 12.0 + s, phase="baselines", baseline="vanilla",
                   routing="none", fid_k=fk, global_batch=10) for s, fk in enumerate((40.0, 44.0))]
    rows += [_trial(f"trial-a{s}", "DTR", s, 9.0 + s, fid_k=30.0, global_batch=10) for s in (0, 1)]
    rows += [_trial(f"trial-b{s}", "DTR", s, 11.0 + s, beta=0.6, fid_k=fk, global_batch=10)
             for s, fk in enumerate((41.0, 50.0))]
    return trials_frame(rows)


def _ttq_curves():
    out = []
    for name, fids in {"baseline-vanilla-s0-v0": (60, 40), "baseline-vanilla-s1-v1": (60, 44),
                       "trial-a0": (42, 30), "trial-a1": (41, 30), "trial-b0": (50, 41), "trial-b1": (55, 50)}.items():
        out += [_loss(name, s, 100.0) for s in (10, 20)]
        out += [_fid(name, 10, float(fids[0])), _fid(name, 20, float(fids[1]))]
    return curves_frame(out)


def test_time_to_quality_in_the_trial_and_configuration_tables():
    trials = _ttq_trials()
    assert reference_fid_k(trials) == (42.0, "domain-fashion_mnist")  # mean of vanilla's last FID-k 40, 44
    trials = with_time_to_quality(trials, _ttq_curves())
    steps = dict(zip(trials["name"], trials["steps_to_vanilla_fid_k"]))
    seconds = dict(zip(trials["name"], trials["seconds_to_vanilla_fid_k"]))
    assert steps == {"baseline-vanilla-s0-v0": 20, "baseline-vanilla-s1-v1": None, "trial-a0": 10,
                     "trial-a1": 10, "trial-b0": 20, "trial-b1": None}
    assert seconds["trial-a0"] == pytest.approx(1.0) and seconds["trial-b0"] == pytest.approx(2.0)
    table = config_table(trials, baselines=["vanilla"])
    assert table.reference_fid_k == 42.0
    headers, rows, _ = display_config_table(table)
    col = headers.index("steps to vanilla's FID-k")
    assert headers[col + 1] == "seconds to vanilla's FID-k"
    by_beta = {r[headers.index("β")].text: [c.text for c in r[col:col + 2]] for r in rows}
    assert by_beta == {"—": ["20 (1/2 seeds)", "2.0 (1/2 seeds)"],  # vanilla's seed 1 ends at 44 > 42
                       "0.8": ["10", "1.0"], "0.6": ["20 (1/2 seeds)", "2.0 (1/2 seeds)"]}
    assert any(note.startswith("steps / seconds to vanilla's FID-k") and "42.00" in note
               and "estimated from the logged throughput" in note
               for note in table_notes(table, [], seconds_source(_ttq_curves())))
    t_headers, t_rows = display_trials(trials, table.varied, table.reference_fid_k)
    col = t_headers.index("steps to vanilla's FID-k")
    assert {r[0].text: r[col].text for r in t_rows}["trial-b1"] == "not reached"


def test_no_seed_reaching_it_is_not_reached():
    trials = with_time_to_quality(_ttq_trials(), _ttq_curves())
    trials = trials.with_columns(pl.when(pl.col("name").str.starts_with("trial-b")).then(None)
                                 .otherwise(pl.col("steps_to_vanilla_fid_k")).alias("steps_to_vanilla_fid_k"))
    headers, rows, _ = display_config_table(config_table(trials, baselines=["vanilla"]))
    col = headers.index("steps to vanilla's FID-k")
    assert [r[col].text for r in rows if r[headers.index("β")].text == "0.6"] == ["not reached"]


def _final(fid, label_accuracy=None):
    out = {"fid": fid, "is_mean": 1.4, "precision": 0.1, "recall": 0.05, "feature_set": "domain-fashion_mnist",
           "num_samples": 128}
    return {**out, "label_accuracy": label_accuracy} if label_accuracy is not None else out


def test_label_accuracy_and_time_to_quality_from_a_sweep_on_disk(tmp_path):
    sweep_dir = str(tmp_path / "sweeps" / "smoke-smoke")
    for s in (0, 1):
        name = f"baseline-vanilla-s{s}-v_{s}"
        _write_trial(sweep_dir, name, _config(name, sweep_dir, routing="none", phase="baselines", baseline="vanilla",
                                              seed=s), final={**_final(150.0 + s), "label": "vanilla"})
        name = f"trial-d{s}"
        _write_trial(sweep_dir, name, _config(name, sweep_dir, routing="dtr", beta=0.75, seed=s),
                     final={**_final(140.0 + s, 0.8 + 0.1 * s), "label": "DTR"})
    records = load_sweep(sweep_dir, use_mlflow=False)
    rows = {r["name"]: r for r in records.trials.to_dicts()}
    assert rows["trial-d0"]["label_accuracy"] == 0.8 and rows["baseline-vanilla-s0-v_0"]["label_accuracy"] is None
    # every FID-k of the fixture is 100 - step (80 last): reached at step 20; the smoke preset's batch is 16
    # and the fixture logs images_per_s = 50 + step at every step
    expected = sum(16 / (50.0 + step) for step in range(1, 21))
    assert rows["trial-d0"]["steps_to_vanilla_fid_k"] == 20
    assert rows["trial-d0"]["seconds_to_vanilla_fid_k"] == pytest.approx(expected)
    csv = trials_table(sweep_dir)
    assert {"label_accuracy", "steps_to_vanilla_fid_k", "seconds_to_vanilla_fid_k"} <= set(csv.columns)
    assert csv.filter(pl.col("name") == "trial-d1")["steps_to_vanilla_fid_k"].to_list() == [20]
    table = config_table(records.trials, baselines=["vanilla"])
    headers, cells, _ = display_config_table(table)
    assert headers.index("Label acc. ↑") > headers.index("FID ↓")
    label = {r[0].text.rstrip(" ★"): r[headers.index("Label acc. ↑")].text for r in cells}
    # mean 0.85 of (0.8, 0.9); 95% CI t_{.975,1} * s / sqrt(2) = 12.706 * 0.0707 / 1.414 = 0.635
    assert label == {"vanilla (baseline)": "—", "DTR": "0.850 ± 0.635"}
