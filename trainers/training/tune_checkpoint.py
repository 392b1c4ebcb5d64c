"""What a trial hands Ray Tune (or Ray Train) as its checkpoint, and where a restarted trial resumes.

A trial's run directory lives under the sweep directory, which is also Tune's storage, so a copy of
the checkpoint in Tune's storage would be a second copy of the same bytes on the same file system:
at the paper budget ~13 GB per checkpoint (fp32 weights, Adam moments, EMA) times the two Tune keeps,
per trial.  A trial therefore reports a *pointer*: a directory holding one small JSON file that names
the checkpoint's step and tag in its own run directory.  A restarted trial resumes from its run
directory's newest checkpoint that verifies (which is at least as new as the pointer: checkpoints
are written before they are reported); the pointer is there to tell a run directory that is gone
(storage a node cannot read) from a trial that never checkpointed.  Tune checkpoints that hold a
whole checkpoint (sweeps from before pointers) are still taken.
"""
from __future__ import annotations

import json
import os
import shutil

from trainers.files import atomic_write_json
from trainers.training.checkpoint import checkpoint_root, latest_checkpoint, saved_step

POINTER_FILE = "checkpoint_pointer.json"


class CheckpointUnreadable(FileNotFoundError):
    """Tune has a checkpoint of this trial, but its run directory holds none on this node."""


def pointer_dir(checkpoint_dir: str) -> str:
    """Write (once) and return the pointer directory for the complete checkpoint ``checkpoint_dir``
    (``<run_dir>/checkpoints/<tag>``): ``<run_dir>/tune_pointers/<tag>``, a few hundred bytes."""
    checkpoint_dir = os.path.abspath(checkpoint_dir)
    tag = os.path.basename(checkpoint_dir)
    run_dir = os.path.dirname(os.path.dirname(checkpoint_dir))
    out = os.path.join(run_dir, "tune_pointers", tag)
    if not os.path.exists(os.path.join(out, POINTER_FILE)):
        atomic_write_json(os.path.join(out, POINTER_FILE), {"tag": tag, "step": saved_step(checkpoint_dir),
                                                            "run_name": os.path.basename(run_dir)}, indent=None)
    return out


def restored_checkpoint(run_dir: str, checkpoint, copy_name: str = "restored_checkpoint") -> str | None:
    """Where a (re)started trial resumes, given Tune's last reported checkpoint (or None): the run
    directory's newest checkpoint that verifies, or a whole checkpoint Tune holds when that is newer.
    Raises ``CheckpointUnreadable`` when Tune points at a checkpoint and the run directory has no
    checkpoints at all (it is on storage this node cannot read): training again from step 0 would
    silently throw away the trial's progress."""
    local = latest_checkpoint(run_dir, verify=True)
    if checkpoint is None:
        return local
    target = os.path.join(run_dir, copy_name)
    shutil.rmtree(target, ignore_errors=True)
    restored = checkpoint.to_directory(target)
    pointer = os.path.join(restored, POINTER_FILE)
    if os.path.exists(pointer):
        with open(pointer) as f:
            step = json.load(f)["step"]
        if local is None and not os.path.isdir(checkpoint_root(run_dir)):
            raise CheckpointUnreadable(
                f"Tune holds this trial's checkpoint of step {step}, but {checkpoint_root(run_dir)} does not exist "
                "on this node: the sweep directory must be on storage every node reads (/mnt/dtr-shared on the cluster, README)")
        return local  # a corrupt newest checkpoint falls back to an older one that verifies (warned)
    candidates = [p for p in (local, restored) if p]
    return max(candidates, key=saved_step)
