"""``python -m platform.ui``: the MLflow UI on 127.0.0.1 against this project's tracking store."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from trainers.paths import mlflow_tracking_uri


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m platform.ui", description=__doc__)
    p.add_argument("--port", type=int, default=5000)
    args = p.parse_args(argv)
    uri = mlflow_tracking_uri()
    if uri.startswith(("http://", "https://")):
        print(f"MLFLOW_TRACKING_URI points at a server already: open {uri}")
        return 0
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    print(f"MLflow UI for {uri} on http://127.0.0.1:{args.port} (Ctrl-C to stop)", flush=True)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(args.port)]
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
