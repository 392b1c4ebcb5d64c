"""The sweep driver's command line without a Ray cluster: bad input is one line and starts nothing,
changed settings on resume are refused, --dry-run and --help start nothing, every named space
validates.  (Sweeps that start Ray: tests/test_search.py.)"""
import subprocess
import sys

import pytest
from search_support import ROOT, search_cmd, search_env


def test_bad_input_is_one_line_and_starts_nothing(tmp_path, shared_cache_dir):
    env = search_env(tmp_path, shared_cache_dir)
    cases = [
        ([sys.executable, "-m", "platform.search", "no_such_space"], "unknown search space"),
        (search_cmd("--budget", "galactic"), "unknown budget"),
        (search_cmd("--set", "beta=7"), "beta"),
        (search_cmd("--set", "no_such_field=1"), "run-config field"),
        (search_cmd("--trials", "0"), "--trials"),
        (search_cmd("--address", "127.0.0.1:9"), "cannot reach the Ray cluster"),
    ]
    for cmd, needle in cases:
        result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (cmd, result.stderr[-500:])
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], (cmd, result.stderr)
    mlflow_down = {**env, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    result = subprocess.run(search_cmd(), cwd=ROOT, env=mlflow_down, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "cannot reach the MLflow server" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_changed_settings_on_resume_are_refused_in_one_line(tmp_path, shared_cache_dir):
    """A sweep directory remembers its settings (sweep.json); rerunning it with another --seed /
    --objectives / --set or fewer --trials names the differences instead of ignoring them; more
    --trials and another --max-concurrent apply (the resume in test_killed_trial_and_killed_driver_resume)."""
    from platform.sweep import (
        RESUMABLE,
        SweepOptions,
        check_resume,
        resume_settings,
        sweep_settings,
        write_settings,
    )
    opts = dict(space="smoke", budget="smoke")
    write_settings(str(tmp_path), sweep_settings(SweepOptions(**opts)))
    check_resume(str(tmp_path), sweep_settings(SweepOptions(**opts)))
    check_resume(str(tmp_path), sweep_settings(SweepOptions(**opts, trials=4, max_concurrent=1)))  # applied
    with pytest.raises(ValueError) as err:
        check_resume(str(tmp_path), sweep_settings(SweepOptions(**opts, trials=4, seed=3)))
    message = str(err.value)
    assert "started with --seed 0;" in message and "asks for --seed 3," in message and "\n" not in message
    assert "--name" in message and "--fresh" in message
    changed = SweepOptions(**opts, objectives=("fid", "images_per_s"), overrides=(("steps", 40),))
    with pytest.raises(ValueError, match="--objectives fid,images_per_s, --set steps=40"):
        check_resume(str(tmp_path), sweep_settings(changed))
    with pytest.raises(ValueError, match="holds a sweep of --trials 2; --trials 1 cannot take trials back"):
        check_resume(str(tmp_path), sweep_settings(SweepOptions(**opts, trials=1)))
    edited = {**sweep_settings(SweepOptions(**opts)), "search_params": {"beta": "in [0.5, 0.9] step 0.05"}}
    write_settings(str(tmp_path), edited)  # the space's code changed since the sweep started
    with pytest.raises(ValueError, match=r"started with searched parameters beta in \[0.5, 0.9\] step 0.05; "
                                         r"this command asks for searched parameters beta in \[0.5, 0.95\]"):
        check_resume(str(tmp_path), sweep_settings(SweepOptions(**opts)))
    # a resume without --trials / --max-concurrent keeps the raised values; a sweep started before
    # resumes applied them still refuses a change
    write_settings(str(tmp_path), sweep_settings(SweepOptions(**opts, trials=5, max_concurrent=1)))
    kept = resume_settings(str(tmp_path), SweepOptions(**opts))
    assert (kept["trials"], kept["max_concurrent"]) == (5, 1)
    old = {k: v for k, v in sweep_settings(SweepOptions(**opts)).items() if k not in (RESUMABLE, "search_params")}
    write_settings(str(tmp_path), old)
    with pytest.raises(ValueError, match="started with --trials 2; this command asks for --trials 3"):
        check_resume(str(tmp_path), sweep_settings(SweepOptions(**opts, trials=3)))
    # through the CLI: exit 2, one line, nothing started (no Ray, no MLflow store)
    env = search_env(tmp_path, shared_cache_dir)
    result = subprocess.run(search_cmd("--sweep-dir", str(tmp_path), "--seed", "5"), cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "--seed 0" in lines[0], result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


def test_dry_run_and_help_start_nothing(tmp_path, shared_cache_dir):
    """``--dry-run`` prints the trials and an estimate without Ray; ``--help`` does not import torch."""
    env = search_env(tmp_path, shared_cache_dir)
    code = ("import runpy, sys\nsys.argv = ['platform.search', *sys.argv[1:]]\ntry:\n"
            "    runpy.run_module('platform.search', run_name='__main__')\nexcept SystemExit as e:\n"
            "    print('rc', e.code)\n"
            "print('loaded', sorted(m for m in ('torch', 'ray', 'mlflow', 'optuna') if m in sys.modules))")
    dry = subprocess.run([sys.executable, "-c", code, "routing", "--budget", "smoke", "--dry-run", "--trials", "3"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out = dry.stdout
    assert "rc 0" in out, dry.stderr[-2000:]
    assert "baselines: DTR, R-TR, vanilla x seeds [0] = 3 trials" in out
    assert "search: 3 Optuna trials" in out and "routing_clusters in 2..8" in out and "estimate: ~" in out
    assert "'ray'" not in out.splitlines()[-1] and not (tmp_path / "runs").exists()
    helped = subprocess.run([sys.executable, "-c", code, "--help"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert "rc 0" in helped.stdout and "--dry-run" in helped.stdout
    assert helped.stdout.splitlines()[-1] == "loaded []"


def test_invalid_ranges_are_rejected():
    from search_spaces import Float, Int, SearchSpace
    with pytest.raises(ValueError, match="low"):
        SearchSpace("x", "x", params={"beta": Float(0.9, 0.5)}).validate()
    with pytest.raises(ValueError, match="low"):
        SearchSpace("x", "x", params={"routing_clusters": Int(4, 4)}).validate()
    with pytest.raises(ValueError, match="not a run-config field"):
        SearchSpace("x", "x", params={"gamma_ray": Float(0.1, 0.5)}).validate()
    with pytest.raises(ValueError, match="beta"):
        SearchSpace("x", "x", params={"beta": Float(0.5, 0.9)}, baselines={"bad": {"beta": 2.0}}).validate()


def test_every_named_space_validates_and_builds_trial_configs():
    from search_spaces import all_spaces
    from search_spaces.budgets import BUDGETS
    from search_spaces.resolve import check_overrides
    spaces = all_spaces()
    for required in ("dtr_beta", "dtr_alpha", "routing", "loss_weighting", "ant_clusters", "multi_expert",
                     "learned_vs_fixed", "smoke"):
        assert required in spaces
    assert {"vanilla", "R-TR"} <= set(spaces["dtr_beta"].baselines)
    for space in spaces.values():
        space.validate()
        for budget in BUDGETS.values():
            check_overrides(space, budget, {})
