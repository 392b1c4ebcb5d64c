"""Checks of a trial preempted by SIGTERM inside Ray Tune (tests/test_search.py): where it stopped,
where its retry resumed, and that the resumed trajectory is the uninterrupted one, bit for bit."""
import json
import os
import re

from trainers.config import RunConfig
from trainers.training.tracking import read_metrics

PREEMPTED = re.compile(r"preempted: checkpoint of step (\d+) written ([0-9.]+) s after the signal")


def last_logged_step(run_dir: str) -> int:
    """The newest step in the run's metrics.jsonl (0 before the first)."""
    steps = [r["step"] for r in read_metrics(run_dir) if "loss" in r]
    return steps[-1] if steps else 0


def preemptions(log_text: str) -> list[tuple[int, float]]:
    """(step, seconds from the signal to the written checkpoint) of every preemption line a worker printed."""
    return [(int(m.group(1)), float(m.group(2))) for m in PREEMPTED.finditer(log_text)]


def losses(run_dir: str) -> list[tuple]:
    return [(r["step"], r["loss"], r["mse"], r["vb"]) for r in read_metrics(run_dir) if "loss" in r]


def check_exact_resume(trial_dir: str, reference_dir: str, resumed_at: int, after: int = 3) -> None:
    """Train the trial's own config uninterrupted in this process (no evaluation, no checkpoints but the
    last, one thread as the trial had) to ``after`` steps past ``resumed_at`` and compare every logged
    loss with the preempted-and-resumed trial's (a wrong restore shows at the first resumed step)."""
    from trainers.training.run import train
    with open(os.path.join(trial_dir, "config.json")) as f:
        cfg = RunConfig.from_dict(json.load(f))
    steps = min(cfg.steps, resumed_at + after)
    reference = cfg.replace(run_name="reference", run_dir=reference_dir, steps=steps, eval_every=0, ckpt_every=0,
                            final_eval_samples=0)
    train(reference, mlflow_enabled=False, threads=1)
    got, want = losses(trial_dir), losses(reference_dir)
    assert [s for s, *_ in got] == list(range(1, cfg.steps + 1))
    assert got[:steps] == want  # exact equality: the resumed steps saw the same state, batches and noise
