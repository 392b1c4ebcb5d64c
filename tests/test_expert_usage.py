"""Switch-DiT's expert usage (trainers/models/expert_usage.py): recorded by the final evaluation's
artifacts into expert_usage.json (and MLflow), plotted by the report from that file."""
import json
import os

import numpy as np
import pytest
import torch
from report_fixtures import _figure_rows

from reports.figures.common import figure_png
from reports.figures.routing import expert_usage, load_usage_record
from reports.schema import trials_frame
from reports.tables import config_table
from trainers.evaluation.artifacts import write_final_artifacts
from trainers.models.expert_usage import USAGE_FILE, expert_usage_record
from trainers.models.from_config import model_for
from trainers.presets import preset_config
from trainers.training.tracking import MlflowRun


def _switch_cfg(tmp_path, **kw):
    return preset_config("smoke", routing="learned", experts=3, top_k=2, run_dir=str(tmp_path / "run"),
                         run_name="switch", **kw)


def test_record_rows_sum_to_k_and_to_one_and_match_the_gates(tmp_path):
    model = model_for(_switch_cfg(tmp_path))
    with torch.no_grad():  # a gate that depends on t more strongly than at init
        for router in model.router.routers:
            router.gate[-1].weight.mul_(20.0)
    rec = expert_usage_record(model, bins=10)
    sel, gate = np.asarray(rec["selection"]), np.asarray(rec["gate_probs"])
    assert sel.shape == gate.shape == (4, 10, 3) and rec["top_k"] == 2 and rec["bins"][3] == [300, 399]
    assert np.allclose(sel.sum(-1), 2.0, atol=1e-6)  # k selections per timestep: mean k per bin and block
    assert np.allclose(gate.sum(-1), 1.0, atol=1e-6)
    assert ((sel >= 0) & (sel <= 1)).all() and len(np.unique(sel.round(4))) > 2  # usage moves with t
    # by hand, block 1, bin 3 (t = 300..399): the model's own per-t tables averaged over the bin
    assert np.allclose(sel[1, 3], model.expert_usage(block=1)[300:400].mean(0).numpy(), atol=1e-6)
    probs = model.router.gate_table(model.t_embedder)[1, 300:400].mean(0).numpy()
    assert np.allclose(gate[1, 3], probs, atol=1e-6)
    assert expert_usage_record(model_for(preset_config("smoke", routing="dtr"))) is None  # no router: no file


def test_final_artifacts_save_it_and_the_report_plots_it(tmp_path):
    """The final evaluation's artifact writer (MLflow off here: an sqlite store costs ~10 s to create;
    the file goes through the same ``log_artifact`` list as samples.png and metrics.json)."""
    cfg = _switch_cfg(tmp_path)
    model = model_for(cfg)
    write_final_artifacts(cfg, {"fid": 1.0}, model, MlflowRun(cfg, enabled=False))
    with open(os.path.join(cfg.run_dir, USAGE_FILE), "rb") as f:
        data = f.read()
    assert json.loads(data) == json.loads(json.dumps(expert_usage_record(model)))

    loaded = load_usage_record(USAGE_FILE, data)
    assert list(loaded["t"]) == [49.5 + 100 * b for b in range(10)]  # bin centres
    table = config_table(trials_frame([r for r in _figure_rows() if r["name"] == "trial-s0"]))  # Switch-DiT
    fig = expert_usage(table, {"trial-s0": {USAGE_FILE: data}})
    sel_ax, gate_ax = fig.axes
    assert sel_ax.get_title() == gate_ax.get_title() == "Switch-DiT"
    assert len(sel_ax.collections) == len(gate_ax.collections) == 3  # one band per expert
    top = sel_ax.collections[-1].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(2.0, abs=1e-6)  # the stacked selections reach k
    assert figure_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"
