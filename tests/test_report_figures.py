"""Report figures against values computed here, and the benchmark-history trend."""
import json
import math
import os

import numpy as np
import polars as pl
import pytest
from report_fixtures import T_975_DF2, _beta_sweep_rows, _figure_rows, _linear_snr

from reports.schema import trials_frame
from reports.tables import config_table


def test_metric_vs_beta_plots_the_table_means_and_intervals():
    from reports.figures.metrics import metric_vs_param, sweepable_params
    table = config_table(trials_frame(_figure_rows()), baselines=["vanilla"])
    assert sweepable_params(table) == ["beta"]
    fig = metric_vs_param(table, "beta")
    assert [ax.get_title() for ax in fig.axes] == ["FID ↓ vs β", "IS ↑ vs β", "Precision ↑ vs β", "Recall ↑ vs β"]
    fid = fig.axes[0]
    (dtr,) = [c for c in fid.containers if c.get_label() == "DTR"]  # the errorbar of the DTR configurations
    data_line, _caps, (bars,) = dtr.lines
    assert list(data_line.get_xdata()) == [0.6, 0.8]
    assert list(data_line.get_ydata()) == [12.0, 9.0]  # means of (11, 13) and (8, 9, 10)
    half_widths = [(seg[1][1] - seg[0][1]) / 2 for seg in bars.get_segments()]
    assert half_widths[0] == pytest.approx(12.706204736174698 * math.sqrt(2) / math.sqrt(2))  # t_{.975,1} s / sqrt(n)
    assert half_widths[1] == pytest.approx(T_975_DF2 * 1.0 / math.sqrt(3))  # n = 3, s = 1
    bands = {line.get_label(): line.get_ydata()[0] for line in fid.get_lines() if line.get_linestyle() == "--"}
    assert bands == {"vanilla (baseline)": 12.0, "Min-SNR": 9.5, "P2": 9.7, "Switch-DiT": 9.9}


def test_convergence_curves_average_the_seeds_per_step():
    from reports.figures.convergence import convergence_curves
    table = config_table(trials_frame(_figure_rows()), baselines=["vanilla"])
    curves = pl.DataFrame({"name": ["trial-a0", "trial-a0", "trial-a1", "trial-a1"], "step": [100, 200, 100, 200],
                           "loss": [0.5, 0.4, 0.6, 0.45], "fid_k": [50.0, 40.0, None, 42.0]})
    fig = convergence_curves(table, curves)
    fid_ax, loss_ax = fig.axes
    (line,) = [ln for ln in fid_ax.get_lines() if ln.get_label() == "DTR β=0.8"]
    assert list(line.get_xdata()) == [100, 200] and list(line.get_ydata()) == [50.0, 41.0]
    assert len(fid_ax.get_lines()) == 1 and len(loss_ax.get_lines()) == 1  # one configuration logged
    assert loss_ax.get_yscale() == "log"


def test_routing_masks_draw_each_routed_configuration():
    from reports.figures.routing import mask_table, routing_masks
    rows = _figure_rows()
    trials = trials_frame(rows)
    table = config_table(trials, baselines=["vanilla"])
    fig = routing_masks(table, trials)
    drawn = [ax for ax in fig.axes if ax.get_images()]
    assert sorted(ax.get_title() for ax in drawn) == ["DTR β=0.6", "DTR β=0.8"]  # not vanilla, Min-SNR, Switch-DiT
    for ax in drawn:
        mask = ax.get_images()[0].get_array()
        beta = 0.8 if ax.get_title().endswith("0.8") else 0.6
        assert mask.shape == (1000, 128) and (np.asarray(mask).sum(1) == int(128 * beta)).all()
    assert mask_table({**rows[3], "beta": 1.0}) is None  # beta = 1 is the plain model: no mask


def test_loss_weight_curves_match_the_formulas():
    from reports.figures.weights import loss_weight_curves
    fig = loss_weight_curves(trials_frame(_figure_rows()))
    lines = {ln.get_label(): np.asarray(ln.get_ydata(), dtype=float) for ln in fig.axes[0].get_lines()}
    snr = _linear_snr()
    assert set(lines) == {"vanilla (w = 1)", "Min-SNR γ=5 (linear)", "P2 γ=1 k=1 (linear)"}
    assert np.allclose(lines["Min-SNR γ=5 (linear)"], np.minimum(snr, 5.0) / snr, rtol=1e-6)
    assert np.allclose(lines["P2 γ=1 k=1 (linear)"], 1.0 / (1.0 + snr), rtol=1e-6)
    assert loss_weight_curves(trials_frame(_beta_sweep_rows())) is None  # all vanilla: nothing to draw


def test_expert_usage_figure_from_a_switch_dit_usage_table():
    """No trainer writes expert_usage.npy today; the figure is drawn when a run saves
    ``DiT.expert_usage()`` with ``np.save``, which is what this test does with a real model."""
    import io

    import torch

    from reports.figures.routing import expert_usage, load_expert_usage
    from trainers.models import build_model
    from trainers.routing.spec import RoutingSpec
    net = build_model("DiT-T/4", input_size=32, in_channels=1, num_classes=10, learn_sigma=True,
                      routing=RoutingSpec(kind="learned", experts=3, top_k=2))
    with torch.no_grad():
        usage = net.expert_usage().numpy()
    buf = io.BytesIO()
    np.save(buf, usage)
    table = config_table(trials_frame(_figure_rows()), baselines=["vanilla"])
    assert expert_usage(table, {}) is None  # what a real sweep gives today: no figure
    loaded = load_expert_usage("expert_usage.npy", buf.getvalue())
    assert loaded.shape == (1000, 3) and np.allclose(loaded.sum(1), 2)  # top-2 of 3 experts at every t
    fig = expert_usage(table, {"trial-s0": {"expert_usage.npy": buf.getvalue()}})
    (ax,) = fig.axes
    assert ax.get_title() == "Switch-DiT" and len(ax.collections) == 3  # one band per expert


def test_sample_grids_only_from_recorded_samples():
    import io

    import matplotlib.pyplot as plt

    from reports.figures.samples import sample_grids, sample_images
    trials = trials_frame(_beta_sweep_rows())
    table = config_table(trials, baselines=["vanilla"])
    assert sample_images(table, trials, {}) == [] and sample_grids([]) is None
    buf = io.BytesIO()
    plt.imsave(buf, np.zeros((8, 8)), cmap="gray", format="png")
    png = buf.getvalue()
    images = sample_images(table, trials, {"trial-a1": {"samples.png": b"x"}, "trial-a0": {"samples.png": png}})
    assert images == [("DTR β=0.8", png)]  # the lowest seed of the configuration
    fig = sample_grids(images)
    assert [ax.get_title() for ax in fig.axes if ax.get_images()] == ["DTR β=0.8"]


# -- a partial sweep on disk ------------------------------------------------------------------------


def _bench_record(day, scale="full", **metrics):
    return {"time": f"2026-01-0{day}T00:00:00+00:00", "run_id": f"r{day}", "suite": "speed", "scale": scale,
            "threads": 4, "result": "ok", "metrics": {name: {"mean": mean, "band": 0.03, "n": 5, "status": status}
                                                      for name, (mean, status) in metrics.items()}}


def test_bench_history_rows_one_per_invocation_and_metric():
    from reports.bench_history import history_rows
    records = [_bench_record(3, dtr_step_ratio=(1.30, "REGRESSION"), rtr_step_ratio=(1.01, "ok")),
               _bench_record(1, dtr_step_ratio=(1.01, "new")),
               _bench_record(2, scale="tiny", dtr_step_ratio=(2.0, "ok")),
               _bench_record(2, dtr_step_ratio=(1.02, "ok")), "a line that was not a record"]
    frame = history_rows(records, scale="full")
    assert frame["run_id"].to_list() == ["r1", "r2", "r3", "r3"]  # oldest first, the tiny run left out
    assert frame["metric"].to_list() == ["dtr_step_ratio"] * 3 + ["rtr_step_ratio"]
    assert frame["mean"].to_list() == [1.01, 1.02, 1.30, 1.01] and frame["n"].to_list() == [5] * 4
    assert frame.schema["time"] == pl.Datetime("us", "UTC")
    assert history_rows(records, metrics=["rtr_step_ratio"])["mean"].to_list() == [1.01]
    assert history_rows([]).height == 0


def test_bench_history_file_is_read_at_the_edge(tmp_path, monkeypatch):
    from reports.build import read_bench_history
    monkeypatch.setenv("DTR_RUNS_DIR", str(tmp_path))
    assert read_bench_history() is None  # the bench never ran here
    os.makedirs(tmp_path / "bench")
    with open(tmp_path / "bench" / "history.jsonl", "w") as f:
        f.write(json.dumps(_bench_record(1, dtr_step_ratio=(1.01, "new"))) + "\n" + '{"time": "2026-01-0')
    assert read_bench_history()["mean"].to_list() == [1.01]  # a line cut short by a killed run is skipped


def test_bench_trend_figure_marks_regressions():
    from reports.bench_history import history_rows
    from reports.figures.bench import bench_trend
    history = history_rows([_bench_record(1, dtr_step_ratio=(1.01, "new")), _bench_record(2, dtr_step_ratio=(
        1.02, "ok")), _bench_record(3, dtr_step_ratio=(1.30, "REGRESSION"))])
    fig = bench_trend(history)
    assert fig is not None and len(fig.axes) == 1
    ax = fig.axes[0]
    reds = [line for line in ax.get_lines() if line.get_color() == "red"]
    assert len(reds) == 1 and list(reds[0].get_ydata()) == [1.30]
    assert bench_trend(history.clear()) is None


# -- the import graph --------------------------------------------------------------------------------
