"""``train(cfg)``: the entry every caller uses (CLI, Tune trainable, benchmarks).

A plain config trains one model (trainers/training/loop.py); a config with
``multi_expert_n > 1`` trains its N interval experts and evaluates their composite
(trainers/training/multi_expert.py).
"""
from __future__ import annotations

from trainers.config import RunConfig
from trainers.training.loop import Report, train_model
from trainers.training.multi_expert import train_multi_expert
from trainers.training.tracking import write_run_config


def train(cfg: RunConfig, *, resume: str | None = None, parent_run_id: str | None = None,
          report: Report | None = None, mlflow_enabled: bool = True, threads: int | None = None) -> dict:
    """Train ``cfg``; returns the final metrics.  ``report(metrics, checkpoint_dir)`` is called at
    every checkpoint/evaluation step and at the end (Tune uses it); ``resume`` is a run or
    checkpoint directory (a multi-expert run resumes its members by itself)."""
    write_run_config(cfg)
    if cfg.multi_expert_n > 1:
        return train_multi_expert(cfg, parent_run_id=parent_run_id, report=report, mlflow_enabled=mlflow_enabled,
                                  threads=threads)
    return train_model(cfg, resume=resume, parent_run_id=parent_run_id, report=report,
                       mlflow_enabled=mlflow_enabled, threads=threads)
