"""The no-secrets checker (tests/secrets_check.py) finds a planted secret wherever it is written: a
file, a gzip file, an MLflow param, tag, metric name or artifact.  (Its real use: the sweep of
tests/test_search.py::test_killed_trial_and_killed_driver_resume, with the fake secrets in the environment.)"""
import gzip

import mlflow
import pytest
from secrets_check import FAKE_SECRETS, check_no_secrets, scan_mlflow, scan_tree


def test_a_planted_secret_is_found_everywhere_it_is_written(tmp_path):
    password, token = FAKE_SECRETS["MLFLOW_TRACKING_PASSWORD"], FAKE_SECRETS["RAY_AUTH_TOKEN"]
    (tmp_path / "tree" / "deep").mkdir(parents=True)
    (tmp_path / "tree" / "deep" / "state.json").write_text(f'{{"env": {{"X": "{password}"}}}}')
    (tmp_path / "tree" / "log.gz").write_bytes(gzip.compress(f"token={token}".encode()))
    (tmp_path / "tree" / "clean.txt").write_text("nothing here")
    assert sorted(scan_tree(tmp_path / "tree")) == [f"{tmp_path}/tree/deep/state.json: MLFLOW_TRACKING_PASSWORD",
                                                    f"{tmp_path}/tree/log.gz: RAY_AUTH_TOKEN"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("x", artifact_location=(tmp_path / "artifacts").as_uri())
    clean, leaky = (client.create_run(experiment).info.run_id for _ in range(2))
    client.log_param(clean, "beta", "0.8")
    client.log_param(leaky, "aws", FAKE_SECRETS["AWS_SECRET_ACCESS_KEY"])
    client.set_tag(leaky, FAKE_SECRETS["HF_TOKEN"], "as a key")
    client.log_metric(leaky, f"m_{FAKE_SECRETS['AWS_ACCESS_KEY_ID']}", 1.0)
    client.log_artifact(leaky, str(tmp_path / "tree" / "deep" / "state.json"))
    found = scan_mlflow(client, [clean, leaky], tmp_path / "downloaded")
    assert [line.split(": ")[-1] for line in found] == ["AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "AWS_ACCESS_KEY_ID",
                                                        "MLFLOW_TRACKING_PASSWORD"]
    assert scan_mlflow(client, [clean], tmp_path / "downloaded") == []
    with pytest.raises(AssertionError, match="secrets in records"):
        check_no_secrets([tmp_path / "tree" / "clean.txt"], {"driver": f"using {token}"}, client, [clean],
                         tmp_path / "downloaded")
