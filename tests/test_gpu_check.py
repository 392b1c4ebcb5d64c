"""The GPU check (``python -m platform.bench --suite gpu``): its tiny CPU path runs end to end where only
torch and numpy can be imported, writes the promised JSON with finite numbers, refuses a machine without
CUDA in one line, and its modules import nothing beyond torch, numpy, the stdlib and the project."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("deepspeed", "ray", "mlflow", "polars", "optuna", "diffusers", "cleanfid")
MODULES = ("trainers.bench.gpu_check", "platform.bench.gpu", "platform.bench.cli", "platform.bench")


def _python(args, env=None, timeout=120):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _stub_packages(where) -> str:
    """A directory whose packages named like the heavy dependencies fail on import."""
    for name in HEAVY:
        os.makedirs(where / name)
        (where / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed (test stub)')\n")
    return str(where)


def test_tiny_cpu_check_runs_with_only_torch_and_numpy(tmp_path):
    stubs = _stub_packages(tmp_path / "stubs")
    out = tmp_path / "gpu.json"
    env = {"PYTHONPATH": os.pathsep.join([stubs, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "DTR_RUNS_DIR": str(tmp_path / "runs")}
    proc = _python(["-m", "platform.bench", "--suite", "gpu", "--device", "cpu", "--tiny", "--engine", "deepspeed",
                    "--json", str(out)], env)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert {"device", "settings", "peak", "peak_gflops_per_s", "models", "optional", "targets", "passed",
            "git_commit", "time"} <= set(result)
    assert {"name", "torch", "cuda"} <= set(result["device"])
    assert result["settings"]["autocast"] == "bfloat16" and result["settings"]["compile"] is False
    assert math.isfinite(result["peak_gflops_per_s"]) and result["peak_gflops_per_s"] > 0
    (name, m), = result["models"].items()
    assert name == "DiT-T/4"
    for key in ("images_per_s", "model_flops_per_s", "mfu", "dtr_step_ratio", "step_ms", "step_ms_dtr"):
        assert math.isfinite(m[key]) and m[key] > 0, key
    assert m["model_flops_per_s"] == pytest.approx(m["images_per_s"] * m["train_flops_per_image"])
    assert m["mfu"] == pytest.approx(m["model_flops_per_s"] / (result["peak_gflops_per_s"] * 1e9))
    assert len(m["dtr_step_ratio_rounds"]) == result["settings"]["rounds"]
    s = m["sampling"]
    assert s["ddpm250_images_per_s"] > 0 and s["ddim50_images_per_s"] > 0 and s["cfg_scale"] != 1
    # the DeepSpeed part is optional: without the package it is skipped with a note, not a crash
    assert result["optional"]["deepspeed"]["status"] == "skipped"
    assert "deepspeed" in result["optional"]["deepspeed"]["note"]
    # the verdicts follow the numbers, and the exit status follows the verdicts
    verdicts = {t["name"]: t["pass"] for t in result["targets"]}
    assert verdicts == {"mfu DiT-T/4": m["mfu"] >= 0.40, "dtr_step_ratio DiT-T/4": m["dtr_step_ratio"] <= 1.01}
    assert proc.returncode == (0 if all(verdicts.values()) else 1)
    assert "DiT-T/4" in proc.stdout and ("PASS" in proc.stdout or "FAIL" in proc.stdout)


@pytest.fixture(scope="module")
def bare_process() -> dict:
    """One fresh interpreter: the top-level packages the GPU check's modules add to torch + numpy, then
    what ``--suite gpu`` answers there (exit status, stderr) when the machine has no CUDA device."""
    script = ("import contextlib, io, json, sys, torch, numpy\n"
              "before = {m.split('.')[0] for m in sys.modules}\n"
              f"for name in {MODULES!r}: __import__(name)\n"
              "new = {m.split('.')[0] for m in sys.modules} - before - set(sys.stdlib_module_names)\n"
              "got = {'new': sorted(new - {'trainers', 'platform'}),"
              f" 'heavy': [h for h in {HEAVY!r} if h in sys.modules]}}\n"
              "if not torch.cuda.is_available():\n"
              "    err = io.StringIO()\n"
              "    with contextlib.redirect_stderr(err):\n"
              "        got['rc'] = sys.modules['platform.bench.cli'].main(['--suite', 'gpu'])\n"
              "    got['stderr'] = err.getvalue()\n"
              "print(json.dumps(got))\n")
    proc = _python(["-c", script])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_gpu_check_modules_import_only_torch_numpy_stdlib_and_project(bare_process):
    assert bare_process["new"] == [] and bare_process["heavy"] == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_gpu_suite_refuses_a_machine_without_cuda(bare_process):
    assert bare_process["rc"] == 2
    assert bare_process["stderr"].strip() == "no CUDA device; use --device cpu --tiny for the smoke path"


def test_bad_gpu_options_exit_2_and_targets_fail_on_bad_numbers():
    from platform.bench.cli import main
    from trainers.bench.gpu_check import SCALES, targets

    assert main(["--suite", "gpu", "--device", "cpu", "--tiny", "--batch", "0"]) == 2
    spec = SCALES["full"]
    good = {"models": {"DiT-B/2": {"mfu": 0.45, "dtr_step_ratio": 1.004}, "DiT-L/2": {"mfu": 0.5, "dtr_step_ratio": 1.0}}}
    assert all(t["pass"] for t in targets(good, spec))
    slow_dtr = {"models": {**good["models"], "DiT-L/2": {"mfu": 0.5, "dtr_step_ratio": 1.02}}}
    assert [t["name"] for t in targets(slow_dtr, spec) if not t["pass"]] == ["dtr_step_ratio DiT-L/2"]
    missing = {"models": {"DiT-B/2": {"mfu": math.nan, "dtr_step_ratio": 1.0}}}
    assert {t["name"] for t in targets(missing, spec) if not t["pass"]} == {"mfu DiT-B/2", "dtr_step_ratio DiT-L/2"}
