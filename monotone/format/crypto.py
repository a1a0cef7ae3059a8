"""Encryption of stored blocks: AES-256 in GCM mode (authenticated).

A sealed block is nonce (12 bytes) | ciphertext | tag (16 bytes). The tag makes
a wrong key or a changed byte an error, never garbage data. The associated data
binds a block to its place in the file, so blocks cannot be swapped around, and
(partition files: partition/fileformat.py) the file to its partition and storage.
"""
from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import CorruptionError, MonotoneError

KEY_SIZE = 32
NONCE = 12
OVERHEAD = NONCE + 16


def new_key() -> str:
    """A fresh 256-bit key as hex text (how storages persist it)."""
    return os.urandom(KEY_SIZE).hex()


def parse_key(text: str) -> bytes:
    """The AES-256 key a storage's encryption_key names: 64 hex digits (how keys made
    here are written), or 32 bytes taken as they are (how the original takes a key:
    a 32-character string is its own key, its bytes in UTF-8)."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) == KEY_SIZE:
        return raw
    try:
        key = bytes.fromhex(text) if len(text) == 2 * KEY_SIZE else b""
    except ValueError:
        key = b""
    if len(key) != KEY_SIZE:
        raise MonotoneError("encryption key must be 256bit")
    return key


def cipher_of(key: str) -> "Cipher | None":
    """The cipher of a storage's key ('' : not encrypted, None)."""
    return Cipher(parse_key(key)) if key else None


class Cipher:
    def __init__(self, key: bytes) -> None:
        self._aes = AESGCM(key)

    def seal(self, data: bytes, where: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self._aes.encrypt(nonce, bytes(data), where)

    def open(self, sealed: bytes, where: bytes, origin: str) -> bytes:
        if len(sealed) < OVERHEAD:
            raise CorruptionError(f"{origin}: encrypted block is truncated")
        try:
            return self._aes.decrypt(sealed[:NONCE], sealed[NONCE:], where)
        except InvalidTag:
            raise CorruptionError(f"{origin}: cannot decrypt (wrong encryption key, "
                                  "or the data is damaged)") from None
