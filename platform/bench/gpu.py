"""``python -m platform.bench --suite gpu``: the GPU check of trainers/bench/gpu_check.py, its printed
table and its JSON file (``runs/bench/gpu-<UTC time>.json`` unless ``--json``).

Needs only torch and numpy: cli.py dispatches here before importing anything of the other suites
(MLflow, DeepSpeed, ...), and neither this module nor trainers.bench.gpu_check imports more at module
level.  No MLflow run and no history line: the JSON file is the record.

Exit status: 0 every target passed, 1 a target failed, 2 no CUDA device (without ``--device cpu``),
bad arguments or a crash.
"""
from __future__ import annotations

import datetime as _dt
import os
import sys
import traceback

NO_CUDA = "no CUDA device; use --device cpu --tiny for the smoke path"


def table(result: dict) -> list[str]:
    """The result as printable lines: one row per model, then the targets."""
    dev = result["device"]
    lines = [f"device {dev['name']} (torch {dev['torch']}, CUDA {dev['cuda']}), bf16 GEMM peak "
             f"{result['peak_gflops_per_s']:.0f} GFLOP/s ({result['peak']['size']}^2)",
             f"{'model':<10}{'params':>9}{'step ms':>9}{'img/s':>9}{'TFLOP/s':>9}{'MFU':>7}{'DTR/van':>9}"
             f"{'DDPM250':>9}{'DDIM50':>9}  (sampling img/s, CFG)"]
    for name, m in result["models"].items():
        s = m["sampling"]
        lines.append(f"{name:<10}{m['params'] / 1e6:>8.1f}M{m['step_ms']:>9.2f}{m['images_per_s']:>9.1f}"
                     f"{m['model_flops_per_s'] / 1e12:>9.2f}{m['mfu']:>7.1%}{m['dtr_step_ratio']:>9.4f}"
                     f"{s['ddpm250_images_per_s']:>9.2f}{s['ddim50_images_per_s']:>9.2f}")
    for part, got in result["optional"].items():
        if got.get("status") != "ok":
            lines.append(f"{part}: {got['status']} -- {got['note']}")
        else:
            lines.append(f"{part}: {got['model']} bf16 engine step {got['step_ms']:.2f} ms, "
                         f"{got['images_per_s']:.1f} img/s")
    for t in result["targets"]:
        lines.append(f"{'PASS' if t['pass'] else 'FAIL'}  {t['name']} = {t['value']:.4f} (target {t['target']})")
    return lines


def run_gpu_suite(args) -> int:
    """Run the check for the parsed ``args`` of cli.py; print, write the JSON, return the exit status."""
    try:
        import torch
    except ImportError as err:
        print(f"error: the GPU check needs torch ({err})", file=sys.stderr)
        return 2
    device = args.device or "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    if device == "cpu":
        torch.set_num_threads(args.threads)
    now = _dt.datetime.now(_dt.timezone.utc)
    try:  # imports included: a missing module must exit 2 ("could not run"), not 1 ("a target failed")
        from platform.bench.provenance import git_commit, host_info
        from trainers.bench.gpu_check import GpuCheckOptions, run_check
        from trainers.files import atomic_write_json
        from trainers.paths import runs_dir
        opts = GpuCheckOptions(scale=args.scale, device=device, batch=args.batch, rounds=args.rounds,
                               warmup=args.warmup, compile=args.compile, engine=args.engine or "torch")
        opts.spec()
    except Exception as err:  # noqa: BLE001 -- bad options (ValueError) or a module that cannot load
        print(f"error: {err}" if isinstance(err, ValueError) else traceback.format_exc(), file=sys.stderr)
        return 2
    try:
        result = run_check(opts, lambda text: print(text, flush=True))
        result.update(time=now.isoformat(), git_commit=git_commit(), host=host_info())
        for line in table(result):
            print(line)
        path = args.json_out or os.path.join(runs_dir(), "bench", f"gpu-{now.strftime('%Y%m%d-%H%M%S')}.json")
        atomic_write_json(path, result, indent=1)
    except Exception:  # noqa: BLE001 -- exit 1 means "a target failed", so a crash must not exit 1
        traceback.print_exc()
        return 2
    print(f"result JSON: {path}; {'all targets passed' if result['passed'] else 'a target FAILED'}")
    return 0 if result["passed"] else 1
