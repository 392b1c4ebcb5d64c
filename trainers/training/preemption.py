"""Graceful preemption: SIGTERM (a spot instance's notice, Slurm's or Kubernetes' stop) makes a
training run finish the step in flight, write a checkpoint at that step and exit.

The handler only sets a flag; the loop checks it after every optimizer step
(``PreemptionGuard.stop_requested``, agreed on by every rank) and then calls ``exit_after``,
which writes the checkpoint (unless the step just wrote one) and raises ``Preempted``: a
``SystemExit`` with status 143 (128 + SIGTERM, what schedulers read as "terminated"), so the
command line exits with it and a supervisor restarts the run with ``--resume``, which continues
bit-exactly from that step.

Ray workers.  Python lets only the main thread install signal handlers, and a Ray worker trains
in another thread (Tune's function trainable and Ray Train's worker run the training function in
a thread of their own), while Ray's worker main loop has installed a SIGTERM handler that ends the
process at once (``SystemExit`` in the main thread, "The process receives a SIGTERM").  A runtime
env ``worker_process_setup_hook`` cannot change that: it runs before the main loop, which installs
Ray's handler over it.  So the *relay* is installed from the worker's main thread when that thread
first imports the trial code (``install_in_ray_worker``, called by tune_trainable.py at import: a Ray
actor unpickles its trainable, and with it imports that module, in the main thread, after the main
loop started).  The relay hands a SIGTERM to the guards of the training threads of the process; with
none active (before the loop, during the final evaluation) or while the loop is handing a result to
Tune (``handing_over``: Tune may be stopping the trial, and the thread only returns when it is let
go), it calls Ray's handler as before.  After the checkpoint, ``end_if_terminated`` (called by the
trial function on its way out) passes the deferred signal on to Ray's handler, so the process ends as
Ray meant it to, one step and one checkpoint later.  The retried trial resumes from that checkpoint
(tune_trainable.py takes the newest of Tune's and the run directory's).
"""
from __future__ import annotations

import contextlib
import logging
import os
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

    def __reduce__(self):  # Ray pickles a worker's exception to its controller: rebuild it whole
        return (Preempted, (self.message, self.checkpoint, self.step))


class _Relay:
    """The process's SIGTERM relay (one per process; see the module docstring)."""

    installed = False
    previous = None            # the handler the relay replaced (Ray's)
    guards: set = set()        # guards of training threads that take the signal
    handing_over = 0           # report calls in flight (the loop cannot answer a signal then)
    deferred: int | None = None


def install_relay() -> bool:
    """Install the relay as this process's SIGTERM handler; only the main thread can (False elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if not _Relay.installed:
        _Relay.previous = signal.signal(signal.SIGTERM, _relay)
        _Relay.installed = True
    return True


def install_in_ray_worker() -> bool:
    """``install_relay`` when this is a Ray actor's process (a Tune trial, a Ray Train worker) and the
    caller runs in its main thread; nothing in a driver or a plain process."""
    if "ray" not in sys.modules:
        return False
    try:
        import ray
        if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
            return False
    except Exception:  # noqa: BLE001 -- never fail an import over this
        return False
    return install_relay()


def relay_installed() -> bool:
    return _Relay.installed


def _relay(signum, frame) -> None:
    guards = list(_Relay.guards)
    if guards and not _Relay.handing_over:
        _Relay.deferred = signum
        for guard in guards:
            guard._handle(signum, frame)
        return
    _pass_on(signum, frame)


def _pass_on(signum, frame) -> None:
    """What the process would have done without the relay."""
    previous = _Relay.previous
    if callable(previous):
        previous(signum, frame)
    elif previous in (signal.SIG_DFL, None):
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


@contextlib.contextmanager
def handing_over():
    """Around a report to Tune / Ray Train: a SIGTERM meanwhile ends the process at once (the report
    may block until Tune lets the trial go on, which it never does for a trial it stops)."""
    _Relay.handing_over += 1
    try:
        yield
    finally:
        _Relay.handing_over -= 1


def end_if_terminated() -> None:
    """When the relay held back a SIGTERM for a checkpoint and no guard needs it any more, pass it on
    (in the main thread, through ``_thread.interrupt_main``): the process ends as it would have."""
    if _Relay.deferred is not None and not _Relay.guards:
        import _thread
        signum, _Relay.deferred = _Relay.deferred, None
        print("passing the SIGTERM on: the process ends", file=sys.stderr, flush=True)
        _thread.interrupt_main(signum)


class PreemptionGuard:
    """Install with ``with PreemptionGuard() as guard:``; the previous handler comes back on exit.

    In the main thread the guard installs its own handler; in another thread it registers with the
    process's relay when one is installed (a Ray worker), and otherwise cannot see the signal."""

    def __init__(self, signum: int = signal.SIGTERM):
        self.signum, self.received_at, self._previous = signum, None, None
        self._installed = self._relayed = False

    def __enter__(self) -> "PreemptionGuard":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(self.signum, self._handle)
            self._installed = True
        elif _Relay.installed and self.signum == signal.SIGTERM:
            _Relay.guards.add(self)
            self._relayed = True
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @property
    def watching(self) -> bool:
        """Whether a SIGTERM reaches this guard."""
        return self._installed or self._relayed

    def release(self) -> None:
        """Give the signal back to the previous handler (after the last checkpoint: a SIGTERM during
        the final evaluation then ends the process at once; resume re-runs only the evaluation)."""
        if self._installed:
            signal.signal(self.signum, self._previous)
            self._installed = False
        if self._relayed:
            _Relay.guards.discard(self)
            self._relayed = False

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
            # NCCL reduces CUDA tensors only; gloo CPU ones
            device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
            box = torch.tensor([1.0 if flag else 0.0], device=device)
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
