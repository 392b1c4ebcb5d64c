"""Checkpoints that make resume exact.

Layout of ``<run_dir>/checkpoints/step_0001000/``: DeepSpeed's own files (model,
optimizer incl. the ANT-UW group, ZeRO partitions), ``ema.pt``, ``state.pt``
(step, RNG states of every generator), ``config.json``, then ``MANIFEST.json`` (size and
sha256 of every other file, each fsynced) and, written last, the marker ``COMPLETE``.  A
checkpoint without the marker was cut off mid-write and is never resumed from; one whose files
no longer match its manifest (truncated by NFS, bit rot) is skipped on resume with one warning
line, and the newest checkpoint that verifies is used instead.  A write that fails (full disk,
file-size limit) removes its partial directory and raises ``CheckpointWriteError``: the
previous complete checkpoint stays as it was.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil

import numpy as np
import torch

from trainers.config import RunConfig
from trainers.files import atomic_write_text, file_sha256
from trainers.models.from_config import model_for

COMPLETE = "COMPLETE"
MANIFEST = "MANIFEST.json"
log = logging.getLogger(__name__)
_VERIFIED: dict[tuple[str, int], str | None] = {}  # (path, manifest mtime) -> problem or None


class ConfigMismatch(ValueError):
    """Resume was asked with a config that differs in more than the step budget."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, file-size limit, I/O error); its partial
    directory was removed and the previous complete checkpoint is untouched."""


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


def latest_checkpoint(run_dir: str, *, verify: bool = False) -> str | None:
    """The newest complete checkpoint of a run; with ``verify`` the newest whose files match its
    manifest (each one skipped is named in one warning line)."""
    found = complete_checkpoints(run_dir)
    if verify:
        found = [p for p in found if _verified(p)]
    return found[-1] if found else None


def _payload_files(path: str) -> list[str]:
    out = []
    for dirpath, _, files in os.walk(path):
        out += [os.path.relpath(os.path.join(dirpath, f), path) for f in files]
    return sorted(f for f in out if f not in (MANIFEST, COMPLETE))


def write_manifest(path: str) -> dict:
    """Size and sha256 of every file of checkpoint ``path`` (each fsynced first), as MANIFEST.json."""
    files = {rel: {"bytes": os.path.getsize(os.path.join(path, rel)),
                   "sha256": file_sha256(os.path.join(path, rel), fsync=True)} for rel in _payload_files(path)}
    atomic_write_text(os.path.join(path, MANIFEST), json.dumps({"files": files}, indent=1), fsync=True)
    return files


def checkpoint_problem(path: str) -> str | None:
    """Why checkpoint ``path`` cannot be trusted (None when its files match its manifest; a
    checkpoint written before manifests existed is taken on its COMPLETE marker alone)."""
    manifest = os.path.join(path, MANIFEST)
    if not os.path.exists(manifest):
        return None
    try:
        with open(manifest) as fh:
            files = json.load(fh)["files"]
    except (OSError, ValueError, KeyError) as err:
        return f"unreadable manifest ({type(err).__name__})"
    for rel, want in files.items():
        full = os.path.join(path, rel)
        if not os.path.exists(full):
            return f"{rel} is missing"
        size = os.path.getsize(full)
        if size != want["bytes"]:
            return f"{rel} has {size} bytes, the manifest says {want['bytes']}"
        if file_sha256(full) != want["sha256"]:
            return f"{rel} does not match its sha256"
    return None


def _verified(path: str) -> bool:
    """Whether ``path`` verifies (cached per process; a bad one is warned about once)."""
    manifest = os.path.join(path, MANIFEST)
    key = (path, os.stat(manifest).st_mtime_ns if os.path.exists(manifest) else 0)
    if key not in _VERIFIED:
        _VERIFIED[key] = checkpoint_problem(path)
        if _VERIFIED[key]:
            log.warning("skipping corrupt checkpoint %s: %s", path, _VERIFIED[key])
    return _VERIFIED[key] is None


def saved_step(path: str) -> int:
    """The step of a complete checkpoint directory (written into its COMPLETE marker)."""
    with open(os.path.join(path, COMPLETE)) as f:
        return int(f.read().strip())


def resolve_resume_dir(path: str) -> str:
    """Accept a run directory or a checkpoint directory; return the checkpoint directory to
    resume from: the given one, or the run's newest one, when it verifies; else the newest of
    the run's checkpoints (at most as new) that does."""
    path = path.rstrip("/")
    limit = None
    if os.path.exists(os.path.join(path, COMPLETE)):
        if _verified(path):
            return path
        limit = saved_step(path)
        parent = os.path.dirname(path)  # <run>/checkpoints/step_N, or a restored copy <run>/restored_checkpoint
        path = os.path.dirname(parent) if os.path.basename(parent) == "checkpoints" else parent
    found = [p for p in complete_checkpoints(path) if limit is None or saved_step(p) <= limit]
    good = [p for p in found if _verified(p)]
    if not good:
        raise FileNotFoundError(f"no complete checkpoint that verifies under {path}")
    return good[-1]


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
    try:
        if rank == 0 and os.path.exists(path):
            shutil.rmtree(path)  # a stale, incomplete (or corrupt) attempt at the same step
        engine.save_checkpoint(root, tag=tag, client_state={"step": step})
        if rank == 0:
            torch.save(ema.state_dict(), os.path.join(path, "ema.pt"))
            torch.save({"step": step, "rng": rng_states(), **(extra or {})}, os.path.join(path, "state.pt"))
            atomic_write_text(os.path.join(path, "config.json"), cfg.to_json())
            write_manifest(path)
            atomic_write_text(os.path.join(path, COMPLETE), str(step), fsync=True)
    except Exception as err:  # torch.save reports a full disk as RuntimeError, open() as OSError
        if rank == 0:
            shutil.rmtree(path, ignore_errors=True)
        kept = [p for p in complete_checkpoints(cfg.run_dir) if p != path]
        raise CheckpointWriteError(f"could not write checkpoint {path} ({type(err).__name__}: "
                                   f"{str(err).splitlines()[0] if str(err) else ''}); the previous complete "
                                   f"checkpoint {kept[-1] if kept else '(none)'} is kept") from err
    if rank == 0:
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
