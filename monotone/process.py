"""Starting the engine's own processes (the coordinator, its workers).

A child runs `python -P -c BOOT HOME MODULE args...`: -P keeps the working
directory off sys.path, and BOOT puts HOME, where this installation of
monotone lives, first on it. So a user's own `monotone/`, `workers/` or `shm/`
folder in the working directory or on PYTHONPATH never stands in for the
engine's, and the child runs exactly the code its parent runs.
"""
from __future__ import annotations

import os
import sys

HOME = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BOOT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
         "import importlib; sys.exit(importlib.import_module(sys.argv.pop(1)).main())")


def command(module: str, *args: str) -> list[str]:
    """argv running module.main() in a child (its sys.argv[1:] are args)."""
    return [sys.executable, "-P", "-c", _BOOT, HOME, module, *args]


def environment() -> dict:
    """The child's environment: ours, with no BLAS thread pool (it does no algebra)."""
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env
