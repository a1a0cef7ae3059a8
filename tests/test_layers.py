"""Imports flow one way: formats and rows are pure, shm knows nothing of the engine,
the client never imports the coordinator (it starts it as a process)."""
from __future__ import annotations

import ast
import os

from conftest import ROOT

PURE = {"monotone.errors", "monotone.rows", "monotone.format"}


def imports_of(path: str, package: str) -> set[str]:
    tree = ast.parse(open(path).read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                found.add(f"{base}.{node.module}" if node.module else base)
            else:
                found.add(node.module)
    return found


def modules(top: str):
    for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                package = rel[:-9] if rel.endswith(".__init__") else rel.rsplit(".", 1)[0]
                yield rel, path, package


def project(name: str) -> bool:
    return name.split(".")[0] in ("monotone", "shm", "workers", "scripts")


def is_pure(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in PURE)


def test_formats_and_rows_import_only_each_other():
    for rel, path, package in modules("monotone"):
        if is_pure(rel):
            bad = {m for m in imports_of(path, package) if project(m) and not is_pure(m)}
            assert not bad, f"{rel} imports {bad}"


def test_shm_imports_only_pure_modules():
    for rel, path, package in modules("shm"):
        bad = {m for m in imports_of(path, package)
               if project(m) and not is_pure(m) and not m.startswith("shm")}
        assert not bad, f"{rel} imports {bad}"


def test_client_never_imports_workers_or_scripts():
    for rel, path, package in modules("monotone"):
        bad = {m for m in imports_of(path, package) if m.split(".")[0] in ("workers", "scripts")}
        assert not bad, f"{rel} imports {bad}"
