"""``python -m platform.ui`` (the README's ``make ui``): the MLflow UI serves this project's store."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_the_project_tracking_store(tmp_path):
    import mlflow
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(tracking_uri=uri).create_experiment("ui-check", artifact_location=str(tmp_path / "art"))
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.Popen([sys.executable, "-m", "platform.ui", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=50"
    names, deadline = None, time.time() + 180
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    names = {e["name"] for e in json.load(resp)["experiments"]}
                    break
            except OSError:
                time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode(errors="replace")
    assert names is not None, f"the UI never answered on port {port}:\n{out[-3000:]}"
    assert "ui-check" in names  # the store named by MLFLOW_TRACKING_URI, not some other one
    assert f"127.0.0.1:{port}" in out  # it says where it listens


def test_a_run_shows_its_source_and_system_metrics_in_mlflow(tmp_path, monkeypatch):
    """What the UI shows of every training run (trainers/training/tracking.py): the git commit and dirty
    flag, MLflow's system metrics, and a note naming params too long to be params."""
    import mlflow

    from trainers.paths import PROJECT_ROOT
    from trainers.presets import preset_config
    from trainers.training.tracking import MlflowRun
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DTR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DTR_SYSTEM_METRICS_INTERVAL", "0.2")
    cfg = preset_config("smoke", run_name="tracked", run_dir=str(tmp_path / "runs" / "tracked"),
                        mlflow_experiment="tracking-check", extra={"note": "x" * 7000})
    run = MlflowRun(cfg)
    time.sleep(1.0)
    run.finish()
    got = mlflow.MlflowClient(tracking_uri=uri).get_run(run.run_id)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    if head.returncode == 0:
        assert got.data.tags["mlflow.source.git.commit"] == head.stdout.strip()
        assert got.data.tags["dtr.git_dirty"] in ("true", "false")
    assert any(k.startswith("system/cpu_utilization") for k in got.data.metrics), sorted(got.data.metrics)
    assert "extra" not in got.data.params and "extra" in got.data.tags["dtr.params_left_out"]
    assert got.info.status == "FINISHED"
