"""Graceful preemption: SIGTERM (a spot instance's notice, Slurm's or Kubernetes' stop) makes a
training run finish the step in flight, write a checkpoint at that step and exit.

The handler only sets a flag; the loop checks it after every optimizer step
(``PreemptionGuard.stop_requested``, agreed on by every rank) and then calls ``exit_after``,
which writes the checkpoint (unless the step just wrote one) and raises ``Preempted``: a
``SystemExit`` with status 143 (128 + SIGTERM, what schedulers read as "terminated"), so the
command line exits with it and a supervisor restarts the run with ``--resume``, which continues
bit-exactly from that step.  Python lets only the main thread install signal handlers: a run
started in another thread (a Ray Tune function trainable) keeps the process's handler, so there a
SIGTERM ends the process and the retried trial resumes from its newest checkpoint.
"""
from __future__ import annotations

import logging
import signal
import sys
import threading
import time

log = logging.getLogger(__name__)
EXIT_STATUS = 128 + signal.SIGTERM


class Preempted(SystemExit):
    """The run stopped on SIGTERM after checkpointing; ``checkpoint`` is where it resumes from."""

    def __init__(self, message: str, checkpoint: str | None, step: int):
        super().__init__(EXIT_STATUS)
        self.message, self.checkpoint, self.step = message, checkpoint, step

    def __str__(self) -> str:
        return self.message


class PreemptionGuard:
    """Install with ``with PreemptionGuard() as guard:``; the previous handler comes back on exit."""

    def __init__(self, signum: int = signal.SIGTERM):
        self.signum, self.received_at, self._previous, self._installed = signum, None, None, False

    def __enter__(self) -> "PreemptionGuard":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(self.signum, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        """Give the signal back to the previous handler (after the last checkpoint: a SIGTERM during
        the final evaluation then ends the process at once; resume re-runs only the evaluation)."""
        if self._installed:
            signal.signal(self.signum, self._previous)
            self._installed = False

    def _handle(self, signum, frame) -> None:
        if self.received_at is None:
            self.received_at = time.monotonic()
            print(f"received signal {signum}: finishing the current step, then checkpointing", file=sys.stderr,
                  flush=True)

    def stop_requested(self, world: int) -> bool:
        """Whether any rank got the signal (a collective when ``world > 1``: every rank stops at the same step)."""
        flag = self.received_at is not None
        if world > 1:
            import torch
            import torch.distributed as dist
            box = torch.tensor([1.0 if flag else 0.0])
            dist.all_reduce(box, op=dist.ReduceOp.MAX)
            flag = bool(box.item())
        return flag

    def exit_after(self, step: int, checkpoint: str | None, save) -> None:
        """Write the checkpoint of ``step`` (``save()``, unless ``checkpoint`` is already that step's)
        and raise ``Preempted``."""
        path = checkpoint or save()
        waited = f" {time.monotonic() - self.received_at:.1f} s after the signal" if self.received_at else ""
        message = f"preempted: checkpoint of step {step} written{waited} ({path}); continue with --resume"
        print(message, file=sys.stderr, flush=True)
        raise Preempted(message, path, step)
