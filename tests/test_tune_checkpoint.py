"""What a trial hands Tune as its checkpoint (a pointer, not a second copy of the weights) and where
a restarted trial resumes (trainers/training/tune_checkpoint.py).  Real ``ray.tune.Checkpoint``
objects; the checkpoints are directories with a payload, a manifest and a COMPLETE marker, as
``save_checkpoint`` writes them (the sweep test, tests/test_search.py, runs the whole path)."""
import json
import os

import pytest
from ray.tune import Checkpoint

from trainers.training.checkpoint import COMPLETE, checkpoint_root, tag_for, write_manifest
from trainers.training.tune_checkpoint import (
    POINTER_FILE,
    CheckpointUnreadable,
    pointer_dir,
    restored_checkpoint,
)


def _checkpoint(run_dir, step: int, payload_bytes: int = 4096) -> str:
    path = os.path.join(checkpoint_root(str(run_dir)), tag_for(step))
    os.makedirs(path)
    with open(os.path.join(path, "mp_rank_00_model_states.pt"), "wb") as f:
        f.write(os.urandom(payload_bytes))
    write_manifest(path)
    with open(os.path.join(path, COMPLETE), "w") as f:
        f.write(str(step))
    return path


def test_the_pointer_names_the_step_and_is_small(tmp_path):
    run_dir = tmp_path / "trial-a"
    ckpt = _checkpoint(run_dir, 20, payload_bytes=1 << 20)
    pointer = pointer_dir(ckpt)
    assert pointer == str(run_dir / "tune_pointers" / tag_for(20))
    assert os.listdir(pointer) == [POINTER_FILE]
    assert json.load(open(os.path.join(pointer, POINTER_FILE))) == {"tag": tag_for(20), "step": 20,
                                                                     "run_name": "trial-a"}
    assert os.path.getsize(os.path.join(pointer, POINTER_FILE)) < 200
    assert pointer_dir(ckpt) == pointer  # a second report of the same checkpoint


def test_a_restarted_trial_resumes_from_the_newest_verified_local_checkpoint(tmp_path):
    run_dir = tmp_path / "trial-a"
    reported = _checkpoint(run_dir, 10)
    newest = _checkpoint(run_dir, 15)  # written after the last report (a SIGTERM's checkpoint)
    tune_copy = Checkpoint.from_directory(pointer_dir(reported))
    assert restored_checkpoint(str(run_dir), tune_copy) == newest
    assert restored_checkpoint(str(run_dir), None) == newest
    # another trial whose newest one is corrupt: the older one that verifies, not step 0
    run_dir = tmp_path / "trial-b"
    reported, newest = _checkpoint(run_dir, 10), _checkpoint(run_dir, 15)
    with open(os.path.join(newest, "mp_rank_00_model_states.pt"), "r+b") as f:
        f.truncate(100)
    assert restored_checkpoint(str(run_dir), Checkpoint.from_directory(pointer_dir(reported))) == reported


def test_a_pointer_to_a_run_directory_this_node_cannot_read_is_one_clear_error(tmp_path):
    elsewhere = tmp_path / "node-1" / "trial-a"
    tune_copy = Checkpoint.from_directory(pointer_dir(_checkpoint(elsewhere, 10)))
    here = tmp_path / "node-2" / "trial-a"
    os.makedirs(here)
    with pytest.raises(CheckpointUnreadable, match="step 10.*storage every node reads"):
        restored_checkpoint(str(here), tune_copy)


def test_a_whole_checkpoint_in_tune_from_an_older_sweep_is_still_taken(tmp_path):
    old_style = _checkpoint(tmp_path / "tune-storage", 30)
    run_dir = tmp_path / "trial-a"
    _checkpoint(run_dir, 20)
    resumed = restored_checkpoint(str(run_dir), Checkpoint.from_directory(old_style))
    assert resumed == str(run_dir / "restored_checkpoint")
    assert open(os.path.join(resumed, COMPLETE)).read() == "30"
