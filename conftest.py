"""Root conftest: make sure ``import platform`` resolves to the repo's shim package
(which re-exports the stdlib module), even if pytest imported the stdlib one first."""
import importlib
import os
import sys

_ROOT = os.path.dirname(os.path.abspath(__file__))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
_mod = sys.modules.get("platform")
if _mod is not None and not hasattr(_mod, "__path__"):
    del sys.modules["platform"]
    importlib.import_module("platform")
