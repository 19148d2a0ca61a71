"""Encryption at rest: AES-256-GCM over stored bodies, with key rotation.

Sealed layout: key id (4 bytes), nonce (12 random bytes, one per write), then the
ciphertext with its 16-byte tag. The key id is a truncated hash of the key, so a read
goes straight to the key that wrote the entry instead of trying each; it names a key
without revealing it. The caller's associated data (the entry's header and its cache key)
is authenticated, not stored: a body copied under another key, or a header with an edited
expiry, fails to open.

Keys are 32 bytes written as base64 or hex. The first key seals; every key opens, so a
rotation is `keys: [new, old]` until the old entries have expired.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
_KEY_ID_BYTES = 4
_NONCE_BYTES = 12
_TAG_BYTES = 16
OVERHEAD = _KEY_ID_BYTES + _NONCE_BYTES + _TAG_BYTES


class DecryptError(ValueError):
    """A sealed value that none of the keys opens. `reason` is a metric label:
    `unknown_key` (sealed by a key not configured), `invalid` (tampered, truncated or
    bound to another cache key), `unencrypted` (plaintext where ciphertext is required)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_key(text: str) -> bytes:
    """32 bytes from 64 hex digits or base64 (standard or URL-safe, padding optional).
    The error says what is wrong with the value, never the value."""
    text = text.strip()
    if not text:
        raise ValueError("the key is empty")
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass  # 64 characters of base64 decode to 48 bytes: reported below
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise ValueError(
            f"the key is neither hex nor base64 ({len(text)} characters); "
            "write 32 random bytes, e.g. `openssl rand -base64 32`"
        ) from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"the key decodes to {len(raw)} bytes, not {KEY_BYTES}; e.g. `openssl rand -base64 32`")
    return raw


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"llmcache key id\0" + key).digest()[:_KEY_ID_BYTES]


class Cipher:
    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("encryption needs at least one key")
        self._sealer = AESGCM(keys[0])
        self._sealing_id = key_id(keys[0])
        # The first key wins an (astronomically unlikely) id collision: it is the one in use.
        self._openers = {key_id(k): AESGCM(k) for k in reversed(keys)}
        self.key_count = len(keys)

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return b"".join((self._sealing_id, nonce, self._sealer.encrypt(nonce, plaintext, associated)))

    def open(self, sealed: bytes, associated: bytes) -> bytes:
        if len(sealed) < OVERHEAD:
            raise DecryptError("invalid")
        opener = self._openers.get(sealed[:_KEY_ID_BYTES])
        if opener is None:
            raise DecryptError("unknown_key")
        nonce = sealed[_KEY_ID_BYTES : _KEY_ID_BYTES + _NONCE_BYTES]
        try:
            return opener.decrypt(nonce, sealed[_KEY_ID_BYTES + _NONCE_BYTES :], associated)
        except InvalidTag:
            raise DecryptError("invalid") from None

    def seal_text(self, text: str, associated: bytes) -> str:
        """A string field (e.g. a question in a vector index) as base64 ciphertext."""
        return base64.b64encode(self.seal(text.encode(), associated)).decode("ascii")

    def open_text(self, sealed: str, associated: bytes) -> str:
        try:
            raw = base64.b64decode(sealed, validate=True)
        except (binascii.Error, ValueError):
            raise DecryptError("unencrypted") from None
        try:
            return self.open(raw, associated).decode()
        except UnicodeDecodeError:
            raise DecryptError("invalid") from None
