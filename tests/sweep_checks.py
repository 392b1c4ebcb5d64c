"""What a finished sweep leaves in MLflow beyond metrics (tests/test_search.py runs the sweeps):

- every trial run: its training data as a dataset input whose digest is recomputed here from the
  data files, and a sample grid (MLflow's stepped image ``samples``) at every FID-k step it reached;
- the parent run: the progress metrics of each phase, the best trial's EMA model (loaded back and
  compared with the trial's final checkpoint) with its config beside it, and the report's tag.
"""
import hashlib
import json
import os

import polars as pl


def check_trial_runs(client, children, table: pl.DataFrame, eval_every: int) -> None:
    by_name = {os.path.basename(r["run_dir"]): r for r in table.iter_rows(named=True)}
    for run in children:
        inputs = run.inputs.dataset_inputs
        assert len(inputs) == 1, run.info.run_name
        ds = inputs[0].dataset
        folder, profile = json.loads(ds.source)["uri"], json.loads(ds.profile)
        files = profile["files_sha256"]
        assert sorted(files) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
        for name, digest in files.items():  # the digests of the files themselves
            assert hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest() == digest
        whole = hashlib.sha256("".join(f"{n} {d}\n" for n, d in sorted(files.items())).encode()).hexdigest()
        assert (ds.name, ds.digest, profile["sha256"]) == ("fashion_mnist", whole[:16], whole)
        assert [t.value for t in inputs[0].tags if t.key == "mlflow.data.context"] == ["training"]
        reached = by_name[run.info.run_name]["step"]
        images = [a.path for a in client.list_artifacts(run.info.run_id, "images") if a.path.endswith(".png")]
        steps = sorted({int(p.split("+step+")[1].split("+")[0]) for p in images})  # a resumed step logs again
        want = list(range(eval_every, reached, eval_every)) if by_name[run.info.run_name]["status"] == "finished" \
            else list(range(eval_every, reached + 1, eval_every))
        assert steps == want, (run.info.run_name, steps, want)
        # one FID-k per FID-k step, also for a trial killed during one (resumed, it evaluates it then)
        from trainers.training.tracking import read_metrics
        fid_k_steps = [r["step"] for r in read_metrics(by_name[run.info.run_name]["run_dir"]) if "fid_k" in r]
        assert fid_k_steps == want, (run.info.run_name, fid_k_steps, want)
    from PIL import Image
    run = children[0]
    path = client.download_artifacts(run.info.run_id, [a.path for a in client.list_artifacts(run.info.run_id, "images")
                                                      if a.path.endswith(".png")][0])
    assert Image.open(path).size == (2 + 8 * 34, 2 + 8 * 34)  # 64 samples of 32 px, 8 a row, padding 2


def check_parent_run(client, parent, table: pl.DataFrame, search_trials: int, baseline_trials: int) -> None:
    import mlflow.pytorch
    import torch

    def last(key):
        history = client.get_metric_history(parent.info.run_id, key)
        return max(history, key=lambda m: (m.step, m.timestamp)).value if history else None

    assert (last("trials_done"), last("trials_queued"), last("trials_running"), last("eta_s")) == (
        search_trials, 0, 0, 0)
    assert last("baselines_trials_done") == baseline_trials
    done = table.filter((pl.col("status") == "finished") & pl.col("fid").is_not_null()).sort("fid")
    best = done.row(0, named=True)
    tags = parent.data.tags
    assert tags["dtr.best_trial"] == os.path.basename(best["run_dir"]) and tags["dtr.best_model"].startswith("models:/")
    assert tags["dtr.report"].startswith("report/report.html")
    logged = client.get_logged_model(tags["dtr.best_model"].removeprefix("models:/"))
    assert (logged.name, logged.source_run_id, logged.tags["trial"]) == ("best_ema_model", parent.info.run_id,
                                                                        tags["dtr.best_trial"])
    model = mlflow.pytorch.load_model(logged.artifact_location)  # the models:/ URI needs the store as default
    final = os.path.join(best["run_dir"], "checkpoints", f"step_{best['steps']:07d}", "ema.pt")
    saved = torch.load(final, map_location="cpu")
    loaded = model.state_dict()
    assert sorted(loaded) == sorted(saved) and all(torch.equal(loaded[k], saved[k]) for k in saved)
    config = client.download_artifacts(parent.info.run_id, "best_model/config.json")
    assert json.load(open(config)) == json.load(open(os.path.join(best["run_dir"], "config.json")))
