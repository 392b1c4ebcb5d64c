"""Checkpoints that make resume exact.

Layout of ``<run_dir>/checkpoints/step_0001000/``: DeepSpeed's own files (model,
optimizer incl. the ANT-UW group, ZeRO partitions), ``ema.pt``, ``state.pt``
(step, RNG states of every generator), ``config.json`` and, written last, the
marker ``COMPLETE``.  A checkpoint without the marker was cut off mid-write and
is never resumed from.
"""
from __future__ import annotations

import json
import os
import random
import shutil

import numpy as np
import torch

from trainers.config import RunConfig
from trainers.files import atomic_write_text
from trainers.models.from_config import model_for

COMPLETE = "COMPLETE"


class ConfigMismatch(ValueError):
    """Resume was asked with a config that differs in more than the step budget."""


def checkpoint_root(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def tag_for(step: int) -> str:
    return f"step_{step:07d}"


def complete_checkpoints(run_dir: str) -> list[str]:
    """Complete checkpoint directories of a run, oldest first."""
    root = checkpoint_root(run_dir)
    if not os.path.isdir(root):
        return []
    tags = sorted(t for t in os.listdir(root) if t.startswith("step_")
                  and os.path.exists(os.path.join(root, t, COMPLETE)))
    return [os.path.join(root, t) for t in tags]


def latest_checkpoint(run_dir: str) -> str | None:
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def saved_step(path: str) -> int:
    """The step of a complete checkpoint directory (written into its COMPLETE marker)."""
    with open(os.path.join(path, COMPLETE)) as f:
        return int(f.read().strip())


def resolve_resume_dir(path: str) -> str:
    """Accept a run directory or a checkpoint directory; return the checkpoint directory."""
    if os.path.exists(os.path.join(path, COMPLETE)):
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(f"no complete checkpoint under {path}")
    return latest


def rng_states() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(engine, ema, cfg: RunConfig, step: int, *, rank: int, extra: dict | None = None,
                    keep: int = 2) -> str:
    """Write a complete checkpoint of ``step``; all ranks call this (DeepSpeed saves shards)."""
    root = checkpoint_root(cfg.run_dir)
    tag = tag_for(step)
    path = os.path.join(root, tag)
    if rank == 0 and os.path.exists(path):
        shutil.rmtree(path)  # a stale, incomplete attempt at the same step
    engine.save_checkpoint(root, tag=tag, client_state={"step": step})
    if rank == 0:
        torch.save(ema.state_dict(), os.path.join(path, "ema.pt"))
        torch.save({"step": step, "rng": rng_states(), **(extra or {})}, os.path.join(path, "state.pt"))
        atomic_write_text(os.path.join(path, "config.json"), cfg.to_json())
        with open(os.path.join(path, COMPLETE), "w") as f:
            f.write(str(step))
        for old in complete_checkpoints(cfg.run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return path


def read_checkpoint_config(path: str) -> RunConfig:
    with open(os.path.join(path, "config.json")) as f:
        return RunConfig.from_dict(json.load(f))


def check_resumable(saved: RunConfig, requested: RunConfig) -> None:
    diff = saved.differences(requested)
    if diff:
        listing = ", ".join(f"{k}: saved {a!r} vs requested {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ConfigMismatch(f"cannot resume: the config differs from the checkpoint's in {listing} "
                             "(only the step budget may change)")


def load_checkpoint(engine, ema, path: str) -> dict:
    """Restore engine (model + optimizer), EMA and RNG states; return the saved state dict."""
    root, tag = os.path.split(path.rstrip("/"))
    load_path, _ = engine.load_checkpoint(root, tag=tag)
    if load_path is None:
        raise FileNotFoundError(f"DeepSpeed found no checkpoint at {path}")
    ema.load_state_dict(torch.load(os.path.join(path, "ema.pt"), map_location="cpu"))
    state = torch.load(os.path.join(path, "state.pt"), map_location="cpu", weights_only=False)
    set_rng_states(state["rng"])
    return state


def load_ema_model(checkpoint_dir: str):
    """The EMA model and config of a complete checkpoint."""
    path = resolve_resume_dir(checkpoint_dir)
    cfg = read_checkpoint_config(path)
    model = model_for(cfg)
    model.load_state_dict(torch.load(os.path.join(path, "ema.pt"), map_location="cpu"))
    return model.eval(), cfg, path
