"""Driver-side CLIs of the DTR platform, and a stand-in for the stdlib ``platform``.

The repository root holds a package called ``platform``, which shadows the
standard-library module of the same name that torch, ray, mlflow, deepspeed,
polars and clean-fid call (``platform.system()`` ...).  To keep them working we
execute the interpreter's own ``platform.py`` into this package's namespace and
then restore the package identity, so both ``platform.system()`` and
``python -m platform.search`` work.

Rules that follow (the README says to run ``python -m platform.*`` from the repository
root): nothing under ``platform/`` may be needed by Ray workers (they import the stdlib
module), and no submodule may be named like a stdlib ``platform`` function.
"""
import os as _os
import sysconfig as _sysconfig

_STDLIB_PLATFORM = _os.path.join(_sysconfig.get_paths()["stdlib"], "platform.py")
_own = {k: globals()[k] for k in ("__path__", "__spec__", "__file__", "__name__", "__doc__", "__package__")}
with open(_STDLIB_PLATFORM, encoding="utf-8") as _f:
    exec(compile(_f.read(), _STDLIB_PLATFORM, "exec"), globals())
globals().update(_own)
del _own, _f
