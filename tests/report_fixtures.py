"""Helpers shared by the report tests: synthetic trial rows, a partial sweep directory on disk,
and ``check_report_outputs`` (tests/test_search.py runs it on a real sweep)."""
import glob
import html
import json
import os
import re

import numpy as np
import polars as pl

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


def _linear_snr(T=1000):
    """SNR_t of the linear schedule (betas 1e-4 .. 0.02), computed here, not by trainers/."""
    alpha_bar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))
    return alpha_bar / (1.0 - alpha_bar)


def _figure_rows():
    return _beta_sweep_rows() + [
        _trial("trial-w0", "Min-SNR", 0, 9.5, routing="none", weighting="min_snr", min_snr_gamma=5.0),
        _trial("trial-p0", "P2", 0, 9.7, routing="none", weighting="p2", p2_gamma=1.0, p2_k=1.0),
        _trial("trial-s0", "Switch-DiT", 0, 9.9, routing="learned", experts=3, top_k=2)]


def _config(name, sweep_dir, **fields):
    from trainers.presets import preset_config
    extra = {"space": "smoke", "budget": "smoke", "phase": fields.pop("phase", "search"),
             "baseline": fields.pop("baseline", "")}
    cfg = preset_config("smoke", steps=20, eval_every=10, eval_k=64, final_eval_samples=128, run_name=name,
                        run_dir=os.path.join(sweep_dir, "trials", name), extra=extra, **fields)
    return cfg.to_dict()


def _write_trial(sweep_dir, name, config, *, config_in=("run_dir",), final=None, steps=20, fid_k=True,
                 samples=False):
    """A trial directory as a run leaves it; ``config_in`` says where its config is recorded:
    "run_dir" (config.json, written when training starts), "metrics" (metrics.json, at the end)
    and/or "checkpoint" (a complete checkpoint's config.json)."""
    run_dir = os.path.join(sweep_dir, "trials", name)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
        for step in range(1, steps + 1):
            f.write(json.dumps({"step": step, "loss": 1.0 / step, "images_per_s": 50.0 + step}) + "\n")
            if fid_k and step % 10 == 0:
                f.write(json.dumps({"step": step, "fid_k": 100.0 - step, "feature_set": "domain-fashion_mnist"}) + "\n")
    if "run_dir" in config_in:
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            json.dump(config, f)
    if final is not None:
        with open(os.path.join(run_dir, "metrics.json"), "w") as f:
            json.dump({**({"config": config} if "metrics" in config_in else {}), **final}, f)
    if "checkpoint" in config_in:
        ckpt = os.path.join(run_dir, "checkpoints", "step_0000010")
        os.makedirs(ckpt)
        with open(os.path.join(ckpt, "config.json"), "w") as f:
            json.dump(config, f)
        with open(os.path.join(ckpt, "COMPLETE"), "w") as f:
            f.write("10")
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
