"""``python -m platform.doctor``: print the machine and the versions of the stack.

Also the proof that the ``platform`` shim keeps the stdlib API alive for every
library of the stack (they all call ``platform.system()`` and friends).  A package that is
missing or fails to import is one line (``missing``/``broken``), never a traceback; the exit
status is 1 when any is.
"""
import argparse
import importlib
import sys

import platform

STACK = ("torch", "torchvision", "ray", "mlflow", "optuna", "deepspeed", "polars", "cleanfid", "scipy", "numpy")


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="python -m platform.doctor",
        description="Print the machine, Python and the versions of the stack (" + ", ".join(STACK) + "), and "
                    "whether CUDA is available. One line per package; a missing one says so (exit status 1).")


def package_line(name: str) -> tuple[str, bool]:
    """(the package's line, whether it imported)."""
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] != name:
            return f"{name:<12} broken: needs {err.name}, which is not installed", False
        return f"{name:<12} missing (pip install -e '.[dev]' or make install)", False
    except Exception as err:  # a package that is there but fails to import
        text = str(err).strip().splitlines()
        return f"{name:<12} broken: {type(err).__name__}: {text[0] if text else ''}"[:200], False
    return f"{name:<12} {getattr(module, '__version__', 'installed')}", True


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print(f"system   {platform.system()} {platform.machine()} python {platform.python_version()}")
    ok = True
    for name in STACK:
        line, imported = package_line(name)
        ok &= imported
        print(line, flush=True)
    if "torch" in sys.modules:
        import torch
        print(f"cuda     {torch.cuda.is_available()} ({torch.cuda.device_count()} devices)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
