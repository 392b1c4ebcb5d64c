"""One driver per sweep directory: ``driver.lock`` holds the host, PID and start time of the
driver running it.  A second driver refuses with one line (``SweepLocked``, a ``ValueError``:
the command line prints it as its error); a lock whose PID is dead on this host (a driver killed
with -9) is taken over with one warning.  A lock of another host cannot be checked from here: it
is refused like a live one, and the message says which file to delete when that driver is gone.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from typing import Iterator

LOCK_FILE = "driver.lock"
log = logging.getLogger(__name__)


class SweepLocked(ValueError):
    """Another driver holds the sweep directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def read_lock(sweep_dir: str) -> dict | None:
    """The holder ({"pid", "host", "since"}) of ``sweep_dir``'s lock; None when there is none,
    {} when the file is there but unreadable (a driver died while writing it)."""
    try:
        with open(os.path.join(sweep_dir, LOCK_FILE)) as fh:
            holder = json.load(fh)
        return holder if isinstance(holder, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _stale(path: str, holder: dict) -> bool:
    if not holder:  # unreadable: stale once its writer had ample time to finish writing it
        return time.time() - os.path.getmtime(path) > 10
    return holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", 0)))


def _locked(sweep_dir: str, holder: dict, path: str) -> SweepLocked:
    return SweepLocked(f"{sweep_dir} is in use by another driver (pid {holder.get('pid', '?')} on "
                       f"{holder.get('host', '?')} since {holder.get('since', '?')}): wait for it to finish or stop "
                       f"it; if that driver is gone, delete {path}")


def ensure_unlocked(sweep_dir: str) -> None:
    """Raise ``SweepLocked`` when a live driver holds ``sweep_dir`` (before moving it aside, say)."""
    holder, path = read_lock(sweep_dir), os.path.join(sweep_dir, LOCK_FILE)
    if holder is not None and not _stale(path, holder):
        raise _locked(sweep_dir, holder, path)


def acquire(sweep_dir: str) -> dict:
    """Take the lock of ``sweep_dir`` (created if missing); raise ``SweepLocked`` when a live driver holds it."""
    os.makedirs(sweep_dir, exist_ok=True)
    path = os.path.join(sweep_dir, LOCK_FILE)
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(sweep_dir)
            if holder is None:
                continue  # released meanwhile
            if not _stale(path, holder):
                raise _locked(sweep_dir, holder, path) from None
            log.warning("taking over the stale lock of %s (pid %s on %s is not running)", sweep_dir,
                        holder.get("pid", "?"), holder.get("host", "?"))
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(mine, fh)
        return mine
    raise SweepLocked(f"could not take the lock {path}: other drivers keep taking it")


def release(sweep_dir: str, mine: dict) -> None:
    """Remove the lock if it is still ``mine`` (a driver that took over a stale lock keeps its own)."""
    holder = read_lock(sweep_dir)
    if holder and holder.get("pid") == mine["pid"] and holder.get("host") == mine["host"]:
        os.remove(os.path.join(sweep_dir, LOCK_FILE))


@contextmanager
def sweep_lock(sweep_dir: str) -> Iterator[dict]:
    """``with sweep_lock(dir):`` the block runs as the only driver of ``dir``; the lock goes on any exit."""
    mine = acquire(sweep_dir)
    try:
        yield mine
    finally:
        release(sweep_dir, mine)
