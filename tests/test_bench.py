"""The regression bench (``python -m platform.bench``: platform/bench drives, trainers/bench
holds the cases and the timing).

* the gate's arithmetic on hand-made numbers: noise bands, the Welch comparison band, the
  verdicts, the <= 2% routing claim, the baseline file, the history frame, the interleaving order,
  the efficiency metrics (images/s, model FLOP/s, per core, MFU, precision ratio), case selection;
* the real CLI at ``--scale tiny`` (DiT-T/4, real DeepSpeed engines, real domain-feature FID, a
  real MLflow sqlite store in a temp dir), the README's commands: ``--suite speed
  --update-baseline`` then a re-run against that baseline exits 0; a baseline claiming DTR was
  10x cheaper, with a tight band, exits 1; the start-up of a fresh training process and the laptop
  step's MFU hold their defining relations; one ``--suite speed`` invocation in a store and run
  directory of its own is exactly one run in the ``benchmarks`` experiment and one line of the
  history, both holding its result record; ``--suite quality`` at smoke size trains per case and
  seed under the bench's MLflow run.

Cost: ~2 min of bench runs, plus the Fashion-MNIST domain classifier (~1 min) when the session's
shared cache does not hold it yet (test_metrics trains the same one).
"""
import contextlib
import json
import math
import os
import subprocess
import sys

import pytest
from scipy.stats import t as student_t
from train_support import DIST_ENV

from platform.bench import gate
from platform.bench.baseline import Baseline
from platform.bench.efficiency import efficiency_stats
from platform.bench.gate import Stat, claim_check, compare, comparison_band, ratio_values
from platform.bench.history import append_history, read_history
from platform.bench.options import select_speed_cases
from reports.bench_history import history_rows
from trainers.bench import cases as C
from trainers.bench.measure import interleave
from trainers.files import read_jsonl
from trainers.presets import preset_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Q = 0.99865


def _json(path):
    with open(path) as f:
        return json.load(f)


# --------------------------------------------------------------------------- hand-made numbers

def test_band_of_hand_made_values():
    s = Stat("x", (1.0, 1.2, 0.8, 1.0))
    assert s.mean == pytest.approx(1.0)
    std = math.sqrt((0.04 + 0.04) / 3)
    assert s.std == pytest.approx(std)
    assert s.se == pytest.approx(std / 2)
    assert s.band == pytest.approx(student_t.ppf(Q, 3) * std / 2)
    # many repeats: the familiar 3 * std / sqrt(n)
    many = Stat("y", tuple(1.0 + 0.1 * (-1) ** i for i in range(2000)))
    assert many.band == pytest.approx(3 * many.std / math.sqrt(2000), rel=2e-3)
    assert math.isnan(Stat("z", (1.0,)).band)


def test_ratios_are_formed_round_by_round():
    assert ratio_values((2.0, 4.0, 3.0), (1.0, 2.0, 3.0)) == (2.0, 2.0, 1.0)
    with pytest.raises(ValueError):
        ratio_values((1.0,), (1.0, 2.0))


def test_comparison_band_is_welch():
    # equal se and n: df = 2 (n - 1)
    assert comparison_band(0.1, 5, 0.1, 5) == pytest.approx(student_t.ppf(Q, 8) * math.sqrt(0.02))
    # one side without spread: the other side's t(n - 1)
    assert comparison_band(0.1, 4, 0.0, 4) == pytest.approx(student_t.ppf(Q, 3) * 0.1)
    assert comparison_band(0.0, 4, 0.0, 4) == 0.0


def _base(values, fingerprint="fp", gated=True, unit="x"):
    return Stat("m", tuple(values), unit, gated, fingerprint).summary()


def test_verdicts():
    base = _base([1.00, 1.01, 0.99, 1.00, 1.00])
    same = Stat("m", (1.0, 1.005, 0.995, 1.0, 1.0), fingerprint="fp")
    slower = Stat("m", (1.5, 1.51, 1.49, 1.5, 1.5), fingerprint="fp")
    faster = Stat("m", (0.5, 0.51, 0.49, 0.5, 0.5), fingerprint="fp")
    assert compare(same, base).status == gate.OK
    v = compare(slower, base)
    assert v.status == gate.REGRESSION and v.regressed
    assert v.delta == pytest.approx(0.5) and v.rel_change == pytest.approx(0.5)
    assert v.allowed == pytest.approx(comparison_band(slower.se, 5, base["se"], 5))
    assert compare(faster, base).status == gate.FASTER
    assert compare(slower, None).status == gate.NEW
    assert compare(Stat("m", slower.values, fingerprint="other"), base).status == gate.CHANGED
    assert compare(Stat("m", (1.5,), fingerprint="fp"), base).status == gate.UNBANDED
    # absolute times are reported, not gated, unless asked
    absolute = Stat("m", slower.values, "ms", False, "fp")
    assert compare(absolute, _base(base["values"], gated=False, unit="ms")).status == gate.INFO
    assert compare(absolute, _base(base["values"], gated=False, unit="ms"), gate_absolute=True).regressed
    # throughput, FLOP/s, MFU: a fall is the regression
    assert compare(Stat("m", faster.values, "x", True, "fp", "", True), base).regressed
    assert compare(Stat("m", slower.values, "x", True, "fp", "", True), base).status == gate.FASTER
    # a shift inside the noise is not a regression
    noisy_base = _base([0.8, 1.2, 1.0, 0.9, 1.1])
    assert compare(Stat("m", (0.9, 1.3, 1.1, 1.0, 1.2), fingerprint="fp"), noisy_base).status == gate.OK


def test_claim_check():
    assert claim_check(Stat("r", (1.00, 1.01, 1.02))).status == "PASS"
    within = claim_check(Stat("r", (0.98, 1.03, 1.08)))          # mean 1.03, band ~ +-0.9
    assert within.status == "PASS (within noise)" and not within.failed
    fail = claim_check(Stat("r", tuple(1.10 + 0.001 * (-1) ** i for i in range(10))))
    assert fail.status == "FAIL" and fail.failed
    assert claim_check(Stat("r", (1.2, 1.2)), applicable=False, why_not="tiny").status == "n/a"


def test_baseline_file_keeps_other_entries(tmp_path):
    path = str(tmp_path / "b.json")
    b = Baseline.load(path)
    b.update("full", [Stat("dtr_step_ratio", (1.0, 1.02), fingerprint="a")], {"git_commit": "x"})
    b.save()
    b = Baseline.load(path)
    b.update("full", [Stat("fid_k_dtr", (20.0, 21.0, 22.0), "FID", fingerprint="b"), Stat("one", (1.0,))], {})
    b.save()
    raw = _json(path)
    assert set(raw["scales"]["full"]["metrics"]) == {"dtr_step_ratio", "fid_k_dtr", "one"}
    assert raw["scales"]["full"]["metrics"]["one"]["se"] is None           # NaN stored as null
    again = Baseline.load(path)
    assert compare(Stat("one", (1.0, 1.1)), again.entry("full", "one")).status == gate.UNBANDED
    assert compare(Stat("fid_k_dtr", (20.5, 21.5), "FID", fingerprint="b"),
                   again.entry("full", "fid_k_dtr")).status == gate.OK
    assert again.entry("tiny", "fid_k_dtr") is None


def bench_history(path, **filters):
    """The history file as the trend plots read it: platform.bench's records, reports' frame."""
    return history_rows(read_history(path), **filters)


def test_bench_history_frame(tmp_path):
    path = str(tmp_path / "history.jsonl")
    for i, (ratio, status) in enumerate([(1.01, "ok"), (1.5, "REGRESSION")]):
        append_history({"time": f"2026-01-0{i + 1}T03:00:00+00:00", "run_id": f"r{i}", "suite": "speed",
                        "scale": "full", "git_commit": "abc", "host": "h", "device": "cpu", "threads": 1,
                        "engine": "deepspeed", "result": "ok" if i == 0 else "regression",
                        "metrics": {"dtr_step_ratio": {"mean": ratio, "std": 0.01, "n": 10, "band": 0.02,
                                                       "unit": "x", "gated": True, "status": status},
                                    "step_ms_vanilla": {"mean": 900.0, "std": None, "n": 10, "band": None,
                                                        "unit": "ms", "gated": False, "status": "info"}}}, path)
    with open(path, "a") as f:
        f.write('{"cut short')  # a killed run's partial line is skipped
    df = bench_history(path)
    assert df.height == 4 and {"time", "metric", "mean", "band", "status", "git_commit"} <= set(df.columns)
    ratios = bench_history(path, metrics=["dtr_step_ratio"])
    assert ratios["mean"].to_list() == [1.01, 1.5] and ratios["status"].to_list() == ["ok", "REGRESSION"]
    assert str(ratios["time"].dtype).startswith("Datetime")
    assert bench_history(path, scale="tiny").height == 0
    assert bench_history(str(tmp_path / "missing.jsonl")).height == 0


class _Fake:
    def __init__(self, name, repeats, log, cost):
        self.name, self.repeats, self.per_unit, self.log, self.cost = name, repeats, 1, log, cost

    def unit(self):
        self.log.append(self.name)
        self.out = sum(range(self.cost))  # a little work to time


def test_interleave_rotates_and_alternates_units():
    log = []
    runners = [_Fake("a", 2, log, 1000), _Fake("b", 2, log, 1000), _Fake("c", 1, log, 1000)]
    out = interleave(runners, rounds=3, warmup=1, clock="wall")
    assert log[:3] == ["a", "b", "c"]                          # warm-up pass
    assert log[3:8] == ["a", "b", "c", "a", "b"]               # round 1: unit by unit
    assert log[8:13] == ["b", "c", "a", "b", "a"]              # round 2 starts one later
    assert log[13:18] == ["c", "a", "b", "a", "b"]
    assert {k: len(v) for k, v in out.rounds.items()} == {"a": 3, "b": 3, "c": 3}
    assert out.cpu_total > 0 and out.wall_total > 0


def test_efficiency_metrics_from_hand_made_timings():
    own, other, peak = C.efficiency_cases("laptop", micro_batch=8)
    assert (own.model, own.micro_batch, own.precision) == (preset_config("laptop").model, 8,
                                                           preset_config("laptop").precision)  # read, not copied
    times = {own.name: [0.1, 0.2], other.name: [0.05, 0.1], "peak": [0.01, 0.02]}
    for ran, ratio in (("fp32", 0.5), ("amp-bf16", 2.0)):   # always reduced precision over fp32
        info = {own.name: {"images_per_unit": 8, "flops_per_image": 1e9, "precision_ran": ran},
                other.name: {"precision_ran": "amp-bf16" if ran == "fp32" else "fp32"},
                "peak": {"flops_per_unit": 2e9, "precision_ran": ran}}
        by = {st.name: st for st in efficiency_stats([own, other, peak], times, info, {"threads": 4})}
        assert by["laptop_images_per_s"].values == pytest.approx((80, 40))
        assert by["laptop_model_flops_per_s"].values == pytest.approx((80e9, 40e9))
        assert by["laptop_model_flops_per_s_per_core"].values == pytest.approx((20e9, 10e9))
        assert by["peak_matmul_flops_per_s"].values == pytest.approx((200e9, 100e9))
        assert by["laptop_mfu"].values == pytest.approx((0.4, 0.4)) and by["laptop_mfu"].higher_is_better
        assert by["laptop_precision_step_ratio"].values == pytest.approx((ratio, ratio))


def test_case_selection_adds_what_a_case_is_measured_with():
    speed = C.suite("tiny").speed

    def names(*sel):
        return {c.name for c in select_speed_cases(speed, sel)}
    assert {"startup", "dsinit", "laptop", "peak"} <= names() and "dsinit_jit" not in names()
    assert names("dtr") == {"calib", "vanilla", "dtr"}
    assert names("startup", "dsinit_jit") == {"startup", "dsinit_jit"}
    assert names("laptop") == {c.name for c in C.efficiency_cases("laptop")}


# --------------------------------------------------------------------------- the real CLI, tiny

TINY = ["--scale", "tiny", "--rounds", "5"]


@contextlib.contextmanager
def _own_bench_env(mp: pytest.MonkeyPatch, root, cache_dir: str):
    """Run directory and MLflow store under ``root``; the distributed variables the in-process
    runs set (DeepSpeed) are put back afterwards."""
    dist_env = {k: os.environ.get(k) for k in DIST_ENV}
    mp.setenv("DTR_RUNS_DIR", str(root / "runs"))
    mp.setenv("DTR_CACHE_DIR", cache_dir)
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")  # 4 slashes: absolute
    mp.setenv("DS_ACCELERATOR", "cpu")
    try:
        yield root
    finally:
        for k, v in dist_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def bench_env(tmp_path_factory, shared_cache_dir):
    with pytest.MonkeyPatch.context() as mp, _own_bench_env(mp, tmp_path_factory.mktemp("bench"),
                                                            shared_cache_dir) as root:
        yield root


def _cli(args):
    """The bench as a user runs it: a subprocess from the repository root."""
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    proc = subprocess.run([sys.executable, "-m", "platform.bench", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def recorded(bench_env):
    """``--update-baseline`` into a fresh file: writes the tiny-scale baseline, exits 0."""
    baseline = str(bench_env / "baseline.json")
    rc, text = _cli(["--suite", "speed", *TINY, "--update-baseline", "--baseline", baseline])
    assert rc == 0, text
    return baseline, text


@pytest.mark.slow
def test_update_baseline_writes_the_file_and_prints_ratios(recorded):
    baseline, text = recorded
    assert "baseline updated" in text and "RESULT: OK" in text
    for name in ("dtr_step_ratio", "rtr_step_ratio", "vanilla_step_per_calib", "sample_image_per_vanilla_step",
                 "fid_per_vanilla_step", "step_ms_vanilla"):
        assert name in text
    assert "n/a: the claim is about DiT-S/2" in text     # the tiny scale does not judge the claim
    entries = _json(baseline)["scales"]["tiny"]["metrics"]
    r = entries["dtr_step_ratio"]
    assert r["n"] == 5 and len(r["values"]) == 5 and r["band"] > 0 and r["gated"] is True
    assert entries["step_ms_vanilla"]["gated"] is False


@pytest.mark.slow
def test_rerun_against_its_own_baseline_exits_zero(recorded, capsys):
    from platform.bench import main
    baseline, _ = recorded
    interleaved = [c.name for c in C.suite("tiny").speed if not isinstance(c, C.PROCESS_CASES)]
    rc = main([*TINY, "--cases", ",".join(interleaved), "--baseline", baseline])  # fresh processes: below
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "RESULT: OK" in out and "changed" not in out and "new (" not in out


@pytest.mark.slow
def test_startup_and_mfu_metrics(recorded):
    baseline, text = recorded
    m = _json(baseline)["scales"]["tiny"]["metrics"]
    first, total = m["startup_first_step_s"]["values"], m["startup_process_s"]["values"]
    assert first and all(0 < f < t < 600 and math.isfinite(f) for f, t in zip(first, total))
    assert 0 < m["dsinit_s"]["mean"] < 30                   # seconds: no JIT build of DeepSpeed's shm op
    images, fpi = m["laptop_images_per_s"]["values"], m["laptop_train_flops_per_image"]["mean"]
    flops, peak = m["laptop_model_flops_per_s"]["values"], m["peak_matmul_flops_per_s"]["values"]
    assert flops == pytest.approx([i * fpi for i in images], rel=1e-4)
    assert m["laptop_model_flops_per_s_per_core"]["values"] == pytest.approx(flops, rel=1e-4)  # 1 thread
    assert m["laptop_mfu"]["values"] == pytest.approx([f / p for f, p in zip(flops, peak)], rel=1e-4)
    assert all(x > 0 for x in m["laptop_mfu"]["values"]) and m["laptop_precision_step_ratio"]["gated"]
    assert "MFU" in text and "start-up of a fresh training process" in text


@pytest.mark.slow
def test_injected_regression_exits_one(recorded, bench_env, capsys):
    from platform.bench import main
    baseline, _ = recorded
    data = _json(baseline)
    entry = data["scales"]["tiny"]["metrics"]["dtr_step_ratio"]
    entry.update(mean=0.1, std=0.001, se=0.0005, band=0.002)  # "DTR used to cost a tenth of vanilla"
    injected = str(bench_env / "injected.json")
    with open(injected, "w") as f:
        json.dump(data, f)
    rc = main(["--scale", "tiny", "--rounds", "5", "--cases", "dtr", "--baseline", injected])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "RESULT: REGRESSION -> exit 1" in out
    line = next(x for x in out.splitlines() if x.startswith("dtr_step_ratio"))
    assert "REGRESSION" in line
    assert _json(injected) == data  # gating never rewrites the baseline


@pytest.mark.slow
def test_quality_suite_trains_per_seed_under_the_bench_run(bench_env, capsys):
    """The quality path end to end at smoke size (10 steps, FID-32: the numbers mean nothing, the
    plumbing is real): trainers.training.run.train per case and seed, nested MLflow runs, seed bands."""
    import mlflow

    from platform.bench import main
    baseline = str(bench_env / "quality.json")
    assert main(["--suite", "quality", "--scale", "tiny", "--seeds", "0,1", "--baseline", baseline,
                 "--update-baseline"]) == 0
    out = capsys.readouterr().out
    assert "bench-dtr-s1: FID-32" in out
    entries = _json(baseline)["scales"]["tiny"]["metrics"]
    assert set(entries) == {"fid_k_vanilla", "fid_k_dtr", "dtr_fid_k_ratio"}
    assert entries["fid_k_dtr"]["n"] == 2 and entries["fid_k_dtr"]["unit"] == "FID"
    client = mlflow.MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("benchmarks")
    parent = client.search_runs([exp.experiment_id], "tags.`bench.suite` = 'quality'")[0]
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.info.run_name for r in children) == ["bench-dtr-s0", "bench-dtr-s1", "bench-vanilla-s0",
                                                          "bench-vanilla-s1"]
    assert "fid_k_dtr" in parent.data.metrics


@pytest.mark.slow
def test_mlflow_run_and_history_of_one_invocation(tmp_path, monkeypatch, shared_cache_dir, capsys):
    """One ``--suite speed`` invocation with a run directory and MLflow store of its own: exactly
    one run in the ``benchmarks`` experiment and one history line, both holding its result record."""
    import mlflow

    from platform.bench import main
    record_path = str(tmp_path / "record.json")
    with _own_bench_env(monkeypatch, tmp_path, shared_cache_dir):
        rc = main(["--suite", "speed", "--scale", "tiny", "--rounds", "3", "--cases", "dtr",
                   "--baseline", str(tmp_path / "no-baseline.json"), "--json", record_path])
    out = capsys.readouterr().out
    assert rc == 0, out
    record = _json(record_path)
    assert record["result"] == "ok" and record["suite"] == "speed" and record["scale"] == "tiny"
    assert set(record["metrics"]) == {"dtr_step_ratio", "vanilla_step_per_calib", "calib_ms", "step_ms_vanilla",
                                      "step_ms_dtr"}
    assert {m["status"] for m in record["metrics"].values()} == {gate.NEW}   # no baseline file

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("benchmarks")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_id == record["run_id"] and run.info.status == "FINISHED"
    assert run.info.run_name.startswith("bench-speed-tiny-")
    assert {k: run.data.tags[k] for k in ("bench.kind", "bench.suite", "bench.scale", "bench.result",
                                          "bench.regressions")} == {
        "bench.kind": "invocation", "bench.suite": "speed", "bench.scale": "tiny", "bench.result": "ok",
        "bench.regressions": "none"}
    params = run.data.params
    assert (params["suite"], params["scale"], params["rounds"], params["cases"]) == ("speed", "tiny", "3",
                                                                                     "calib,vanilla,dtr")
    assert params["git_commit"] == record["git_commit"] and params["threads"] == "1"
    logged = {}  # mean, band and std of every metric (claims are n/a at the tiny scale)
    for name, m in record["metrics"].items():
        logged.update({key: m[field] for key, field in ((name, "mean"), (f"{name}_band", "band"),
                                                         (f"{name}_std", "std")) if m[field] is not None})
    assert len(logged) == 15 and run.data.metrics == pytest.approx(logged)
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["record.json"]

    history = os.path.join(str(tmp_path), "runs", "bench", "history.jsonl")
    assert read_jsonl(history) == [record]
    df = bench_history(history, metrics=["dtr_step_ratio"], suite="speed")
    assert df["run_id"].to_list() == [run.info.run_id]
    assert df["mean"].to_list() == pytest.approx([record["metrics"]["dtr_step_ratio"]["mean"]])


def test_bad_arguments_exit_two(capsys):
    from platform.bench import main
    assert main(["--scale", "tiny", "--rounds", "1", "--no-mlflow"]) == 2
    assert main(["--scale", "tiny", "--cases", "nonsense", "--no-mlflow"]) == 2
    assert "error:" in capsys.readouterr().err
