"""Small file helpers every part of the project shares: atomic writes and JSON-lines files.

An atomic write goes to a temporary file in the same directory and is moved into place with
``os.replace``, so a reader (or a process killed mid-write) never sees half a file.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def atomic_path(path: str, *, fsync: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

        with atomic_path("stats.npz") as tmp:
            np.savez(tmp, ...)          # anything that writes a file by name
    """
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{ext}"  # keep the extension: np.savez adds one
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str, text: str, *, fsync: bool = False) -> str:
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    return path


def atomic_write_json(path: str, obj, *, indent: int | None = 2, fsync: bool = False) -> str:
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default), fsync=fsync)


def _json_default(value):
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def read_jsonl(path: str, *, skip_bad: bool = False) -> list[dict]:
    """The records of a JSON-lines file ([] when it does not exist).  ``skip_bad`` drops lines that
    do not parse (a line cut off by a crash while appending) instead of raising."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if not skip_bad:
                    raise
    return out


def append_jsonl(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(record, default=_json_default) + "\n")


def file_sha256(path: str, *, fsync: bool = False) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB blocks; ``fsync`` also flushes it to disk."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
        if fsync:
            os.fsync(fh.fileno())
    return digest.hexdigest()
