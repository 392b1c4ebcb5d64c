"""``python -m platform.doctor``: print the machine and the versions of the stack.

Also the proof that the ``platform`` shim keeps the stdlib API alive for every
library of the stack (they all call ``platform.system()`` and friends).
"""
import importlib
import sys

import platform

STACK = ("torch", "torchvision", "ray", "mlflow", "optuna", "deepspeed", "polars", "cleanfid", "scipy", "numpy")


def main() -> int:
    print(f"system   {platform.system()} {platform.machine()} python {platform.python_version()}")
    for name in STACK:
        module = importlib.import_module(name)
        print(f"{name:<12} {getattr(module, '__version__', 'installed')}")
    import torch
    print(f"cuda     {torch.cuda.is_available()} ({torch.cuda.device_count()} devices)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
