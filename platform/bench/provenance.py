"""Where a bench number came from: the git commit of the working tree and the host."""
from __future__ import annotations

import os
import socket
import subprocess


def git_commit() -> str:
    """Short commit of the repository, ``-dirty`` when tracked files differ ("unknown" without git)."""
    from trainers.paths import PROJECT_ROOT
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=20, check=False).stdout.strip()
        return (sha or "unknown") + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def host_info() -> dict:
    """Host name, CPU count and torch version (params of the MLflow run, fields of the history)."""
    import torch
    return {"host": socket.gethostname(), "cpus": os.cpu_count(), "torch": torch.__version__}
