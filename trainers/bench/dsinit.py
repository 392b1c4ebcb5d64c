"""The child process of the bench's ``dsinit`` cases (launched by startup.py)::

    python -m trainers.bench.dsinit [--device cpu|cuda] [--shipped]

times, in this fresh process, the imports a training process needs for its process group
(torch, DeepSpeed, trainers.training.distributed) and the group's initialisation, and prints
``{"import_s": ..., "init_s": ...}`` as its last line.  Default: trainers'
``init_deepspeed_distributed`` (on CPU it declares DeepSpeed's op table, so nothing is compiled);
``--shipped``: ``deepspeed.init_distributed`` as DeepSpeed ships it (on CPU it probes its ops and
JIT-builds ``deepspeed_shm_comm`` into TORCH_EXTENSIONS_DIR).  Only the standard library is
imported before the clock starts.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainers.bench.dsinit")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--shipped", action="store_true", help="deepspeed.init_distributed as DeepSpeed ships it")
    args = p.parse_args(argv)
    started = time.perf_counter()
    from trainers.training.distributed import ensure_single_process_env, init_deepspeed_distributed
    ensure_single_process_env()
    os.environ.setdefault("DS_ACCELERATOR", args.device)
    import deepspeed
    imported = time.perf_counter()
    if args.shipped:
        deepspeed.init_distributed(dist_backend="nccl" if args.device == "cuda" else "gloo")
    else:
        init_deepspeed_distributed(args.device)
    done = time.perf_counter()
    print(json.dumps({"import_s": imported - started, "init_s": done - imported}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
