"""The repo's ``platform`` package must keep the stdlib ``platform`` API working."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_stdlib_api_in_this_process():
    import platform
    assert platform.system() == "Linux"
    assert platform.machine()
    assert platform.python_version().startswith(f"{sys.version_info.major}.")
    assert os.path.dirname(platform.__file__).endswith("platform")  # the package, not the stdlib file


def test_whole_stack_imports_under_python_m_platform():
    result = _run("-m", "platform.doctor")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("system   Linux ")
    for name in ("torch", "ray", "mlflow", "optuna", "deepspeed", "polars", "cleanfid"):
        assert any(line.startswith(name + " ") for line in lines), name


def test_search_help_lists_the_named_spaces():
    result = _run("-m", "platform.search", "--help", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    for space in ("dtr_beta", "dtr_alpha", "routing", "loss_weighting", "ant_clusters", "smoke"):
        assert space in result.stdout
