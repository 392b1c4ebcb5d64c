"""``python -m platform.dashboard``: optuna-dashboard on a sweep's Optuna journal, on 127.0.0.1.

A sweep that does not exist is one line and exit status 2; on a journal written by Optuna itself
(no Ray, no training) the server answers over HTTP on 127.0.0.1 with the study and its trials, and
stops on SIGINT."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import optuna

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(tmp_path):
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "DTR_RUNS_DIR": str(tmp_path / "runs")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_missing_sweep_is_one_line(tmp_path):
    cmd = [sys.executable, "-m", "platform.dashboard", "smoke", "--budget", "smoke"]
    result = subprocess.run(cmd, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: no sweep at ") and str(tmp_path / "runs" / "sweeps" / "smoke-smoke") in lines[0]
    (tmp_path / "runs" / "sweeps" / "smoke-smoke").mkdir(parents=True)  # a sweep before its search phase
    result = subprocess.run(cmd, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "has no Optuna journal" in result.stderr and len(result.stderr.splitlines()) == 1


def test_the_dashboard_serves_the_journal_on_loopback(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sweep_dir / "optuna_journal.log")))
    study = optuna.create_study(study_name="smoke-smoke", storage=storage, sampler=optuna.samplers.RandomSampler(0))
    study.optimize(lambda t: (t.suggest_float("beta", 0.5, 0.95) - 0.7) ** 2, n_trials=3)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "platform.dashboard", "smoke", "--sweep-dir", str(sweep_dir),
                             "--port", str(port)], cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline, answer = time.time() + 180, None
        while time.time() < deadline and answer is None:
            assert proc.poll() is None, proc.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=30) as response:
                    answer = json.loads(response.read())
            except OSError:
                time.sleep(0.3)
        assert answer is not None, "the dashboard did not answer within 180 s"
        import psutil  # listening on loopback only, never on every interface
        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", port)]
        studies = answer["study_summaries"]
        assert [s["study_name"] for s in studies] == ["smoke-smoke"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}",
                                    timeout=30) as response:
            trials = json.loads(response.read())["trials"]
        assert sorted(t["params"][0]["param_internal_value"] for t in trials) == sorted(
            t.params["beta"] for t in study.trials)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert f"on http://127.0.0.1:{port}" in out
