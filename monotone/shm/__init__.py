"""Shared memory of a repository: segments, locks, the catalog and memtables.

This package knows nothing of the engine above it: it stores and publishes
columns of events and hands out locks.
"""
