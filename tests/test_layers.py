"""Imports flow one way, as STYLE.md states: shm knows nothing of the engine; the
format layer is pure; the client never imports the coordinator's code (it starts it
as a process); and no module imports itself back through others, counting imports
made inside functions."""
from __future__ import annotations

import ast
import os

from conftest import ROOT

# a package of the repository and the name it is imported by
PACKAGES = {"monotone": "monotone"}
SHM = "monotone.shm"
WORKERS = ("monotone.workers", "monotone.scripts")
FORMAT = "monotone.format"


def modules():
    """(module name, path) of every module of the engine."""
    for folder, package in PACKAGES.items():
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    rel = os.path.relpath(path, os.path.join(ROOT, folder))[:-3]
                    parts = [package] + [p for p in rel.split(os.sep) if p != "__init__"]
                    yield ".".join(parts), path


def imports_of(name: str, path: str) -> set[str]:
    """Every module name imported anywhere in the file (functions included)."""
    is_package = path.endswith("__init__.py")
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = ".".join(base[:len(base) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


MODULES = dict(modules())
# edges to a module's own parent packages are no cycle: Python imports them first
GRAPH = {name: {m for m in imports_of(name, path)
                if m in MODULES and m != name and not name.startswith(m + ".")}
         for name, path in MODULES.items()}
OURS = ("monotone",)


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_every_module_is_found():
    assert {"monotone.client", "monotone.shm.memtable", "monotone.workers.coordinator",
            "monotone.scripts.cli", "monotone.format.region"} <= set(MODULES)


def test_shm_imports_only_the_stdlib_numpy_posix_ipc_and_itself():
    allowed_third = {"numpy", "posix_ipc"}
    for name, path in MODULES.items():
        if not within(name, SHM):
            continue
        for m in imports_of(name, path):
            top = m.split(".")[0]
            if top in OURS:
                assert within(m, SHM), f"{name} imports {m}"
            else:
                assert top in allowed_third or _stdlib(top), f"{name} imports {m}"


def test_format_imports_only_numpy_codecs_and_errors():
    allowed_third = {"numpy", "lz4", "zstandard", "cryptography", "xxhash"}
    for name, path in MODULES.items():
        if not within(name, FORMAT):
            continue
        for m in imports_of(name, path):
            top = m.split(".")[0]
            if top in OURS:
                assert within(m, FORMAT) or within(m, "monotone.errors"), f"{name} imports {m}"
            else:
                assert top in allowed_third or _stdlib(top), f"{name} imports {m}"


def test_client_never_imports_the_coordinator_or_scripts():
    for name, path in MODULES.items():
        if any(within(name, w) for w in WORKERS):
            continue
        bad = {m for m in imports_of(name, path) if any(within(m, w) for w in WORKERS)}
        assert not bad, f"{name} imports {bad}"


def test_no_import_cycles():
    """Depth-first search for a path back to where it started."""
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for m in sorted(GRAPH[name]):
            if state.get(m) == 1:
                cycle = path[path.index(m):] + [m]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if m not in state:
                visit(m, path + [m])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


def _stdlib(top: str) -> bool:
    import sys
    return top in sys.stdlib_module_names or top == "__future__"
