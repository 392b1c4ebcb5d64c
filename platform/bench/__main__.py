"""``python -m platform.bench``: see platform/bench/__init__.py and ``--help``."""
import sys

from platform.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
