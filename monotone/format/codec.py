"""Compression codecs for regions, by name.

decompress(data, size) takes size from the region index, which is no more to be
trusted than data: each codec checks what data can give before it allocates
size bytes, and decompresses no more than size. The caller caps size itself
(partition.fileformat.MAX_REGION)."""
from __future__ import annotations

import lz4.block
import zstandard

from ..errors import CorruptionError, MonotoneError


class Codec:
    name = "none"

    def compress(self, data: bytes | memoryview) -> bytes:
        return bytes(data)

    def decompress(self, data: bytes, size: int) -> bytes:
        if len(data) != size:
            raise CorruptionError(f"region size {len(data)} does not match its index ({size})")
        return data


class Lz4(Codec):
    name = "lz4"
    # an lz4 block gives at most 255 bytes for each of its own (a match length
    # byte of 255; every other byte gives fewer)
    RATIO = 255

    def __init__(self, level: int = 0) -> None:
        self.mode = "high_compression" if level > 0 else "default"
        self.level = level

    def compress(self, data) -> bytes:
        if self.mode == "default":
            return lz4.block.compress(data, store_size=False)
        return lz4.block.compress(data, mode=self.mode, compression=self.level, store_size=False)

    def decompress(self, data: bytes, size: int) -> bytes:
        if size > self.RATIO * len(data) + 64:
            raise CorruptionError(f"region of {len(data)} bytes cannot decompress to the "
                                  f"{size} its index gives")
        try:
            out = lz4.block.decompress(data, uncompressed_size=size)
        except lz4.block.LZ4BlockError as e:
            raise CorruptionError(f"region does not decompress: {e}") from None
        if len(out) != size:
            raise CorruptionError("region decompressed to a wrong size")
        return out


class Zstd(Codec):
    name = "zstd"

    def __init__(self, level: int = 0) -> None:
        self.level = level or 1
        self._compressor = zstandard.ZstdCompressor(level=self.level)
        self._decompressor = zstandard.ZstdDecompressor()

    def compress(self, data) -> bytes:
        return self._compressor.compress(data)

    def decompress(self, data: bytes, size: int) -> bytes:
        try:
            # a frame that declares its size is decompressed into that many bytes,
            # whatever max_output_size says: the declaration must match first
            declared = zstandard.frame_content_size(data)
            if declared not in (size, -1):  # -1: not declared
                raise CorruptionError(f"region declares {declared} bytes decompressed, its "
                                      f"index {size}")
            out = self._decompressor.decompress(data, max_output_size=size)
        except zstandard.ZstdError as e:
            raise CorruptionError(f"region does not decompress: {e}") from None
        if len(out) != size:
            raise CorruptionError("region decompressed to a wrong size")
        return out


CODECS = {"none": Codec, "lz4": Lz4, "zstd": Zstd}


def codec(name: str, level: int = 0) -> Codec:
    cls = CODECS.get(name or "none") if isinstance(name, str) or name is None else None
    if cls is None:
        raise MonotoneError(f"compression '{name}' is not supported: expected one of "
                            f"{', '.join(CODECS)}")
    return cls() if cls is Codec else cls(level)
