"""The trainer's command line and small units around it: --help, --dry-run, a NaN loss through
the CLI, incomplete checkpoints, MLflow keeping a long config whole."""
import json
import os

import pytest
from train_support import artifact_names, cli, error_lines, mlflow_client, run_id_of, smoke

from trainers.config import RunConfig
from trainers.presets import preset_config
from trainers.training.checkpoint import COMPLETE, complete_checkpoints, latest_checkpoint, tag_for

pytestmark = pytest.mark.slow


def test_cli_nan_loss_exits_3(train_env):
    run_dir = train_env / "runs" / "nan_cli"
    proc = cli("--preset", "smoke", "--lr", "1e30", "--steps", "50", "--final-eval-samples", "0", "--threads",
               "1", "--run-name", "nan_cli", "--run-dir", str(run_dir))
    assert proc.returncode == 3, proc.stderr[-3000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "loss became" in lines[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    run = mlflow_client().get_run((run_dir / "mlflow_run_id").read_text().strip())
    assert run.info.status == "FAILED"



def test_latest_checkpoint_skips_incomplete(tmp_path):
    root = tmp_path / "checkpoints"
    for step, complete in ((10, True), (20, True), (30, False)):
        d = root / tag_for(step)
        d.mkdir(parents=True)
        if complete:
            (d / COMPLETE).write_text(str(step))
    assert latest_checkpoint(str(tmp_path)) == str(root / tag_for(20))
    assert complete_checkpoints(str(tmp_path)) == [str(root / tag_for(10)), str(root / tag_for(20))]



def test_mlflow_run_keeps_a_long_config_whole(train_env):
    """MLflow cuts nothing: a config with a long field still reaches the run exactly (tag + artifact)."""
    from trainers.training.tracking import CONFIG_TAG, MlflowRun, write_run_config
    cfg = smoke(train_env, "long-config", extra={"note": "x" * 2000, "space": "dtr_beta"})
    write_run_config(cfg)
    tracker = MlflowRun(cfg)
    tracker.finish()
    run = mlflow_client().get_run(tracker.run_id)
    assert RunConfig.from_dict(json.loads(run.data.tags[CONFIG_TAG])) == cfg
    assert json.loads(run.data.params["extra"]) == cfg.extra
    assert "config.json" in artifact_names(mlflow_client(), tracker.run_id)



def test_cli_help_documents_every_field():
    import dataclasses

    from trainers.training.cli import build_parser
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    missing = [n for n in fields if f"--{n.replace('_', '-')}" not in proc.stdout]
    assert not missing, f"--help lacks flags for {missing}"
    helps = {a.dest: a.help for a in build_parser()._actions}
    undocumented = [n for n in fields if not helps.get(n) or helps[n] == n]
    assert not undocumented, f"flags without a description: {undocumented}"


@pytest.mark.parametrize("args, overrides", [
    (["--routing", "dtr", "--beta", "0.5", "--steps", "7", "--learn-sigma", "false", "--extra", '{"a": 1}',
      "--run-dir", "/tmp/elsewhere", "--run-name", "x"],
     dict(routing="dtr", beta=0.5, steps=7, learn_sigma=False, extra={"a": 1}, run_dir="/tmp/elsewhere",
          run_name="x")),
    (["--weighting", "ant_uw", "--uw-clusters", "4", "--lr", "3e-4", "--run-name", "y"],
     dict(weighting="ant_uw", uw_clusters=4, lr=3e-4, run_name="y", run_dir="<runs>/train/y")),
])
def test_cli_dry_run_prints_the_resolved_config(train_env, args, overrides):
    proc = cli("--preset", "smoke", "--dry-run", *args)
    assert proc.returncode == 0, proc.stderr
    if overrides.get("run_dir", "").startswith("<runs>"):
        overrides["run_dir"] = overrides["run_dir"].replace("<runs>", os.environ["DTR_RUNS_DIR"])
    assert RunConfig.from_dict(json.loads(proc.stdout)) == preset_config("smoke", **overrides)


def test_failed_evaluation_keeps_the_checkpoint_of_its_step(train_env):
    """Checkpoint first: a step that checkpoints and evaluates writes the checkpoint before the
    evaluation, so an evaluation that fails (here: a feature set that does not exist, a real
    failure of the metric code) costs no training; the run fails saying so."""
    from trainers.training.loop import EvaluationError
    from trainers.training.run import train
    cfg = smoke(train_env, "eval-fails", steps=10, ckpt_every=5, eval_every=5, final_eval_samples=0,
                feature_set="no-such-features")
    with pytest.raises(EvaluationError, match="step 5"):
        train(cfg, threads=1)
    assert latest_checkpoint(cfg.run_dir).endswith(tag_for(5))
    run = mlflow_client().get_run(run_id_of(cfg))
    assert run.info.status == "FAILED" and run.data.tags["error"].startswith("EvaluationError")
