"""C library calls Python's os module does not offer (Linux), through ctypes.

ctypes drops the GIL for the call, so they can run on a background thread
while the writer goes on.
"""
from __future__ import annotations

import ctypes


def function(name: str, *argtypes):
    """libc's function `name` with the given argument types, or None without it."""
    try:
        call = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    call.argtypes = argtypes
    return call


# sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE = 2): start writeback
sync_file_range = function("sync_file_range", ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                           ctypes.c_uint)
SYNC_FILE_RANGE_WRITE = 2
# madvise(address, length, MADV_POPULATE_WRITE = 23, Linux 5.14): fault pages in writable
madvise = function("madvise", ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
MADV_POPULATE_WRITE = 23
# fallocate(fd, FALLOC_FL_KEEP_SIZE = 1, offset, length): allocate blocks past the end of
# a file without moving its end
fallocate = function("fallocate", ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
FALLOC_FL_KEEP_SIZE = 1
