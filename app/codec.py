"""Entry ⇄ bytes. Tiers store opaque bytes; only this module knows the layout.

Layout: a fixed struct header, the content type, then the body (zlib-compressed when the
flag says so). A fixed header keeps decoding on the hit path to one `unpack_from`.

With a `Cipher` the body is sealed (compressed first: ciphertext does not compress). The
header and content type stay readable — expiry, size and token count are what TTL and
stats need, and they say nothing of the answer — but they are authenticated together
with the cache key, so an edited expiry or a body copied under another key does not open.
An entry is read with the same `cipher` it was written with: a plaintext entry where a
cipher is given (or the reverse) is refused, so encryption cannot be bypassed by writing
plaintext into a shared store.
"""

from __future__ import annotations

import math
import struct
import time
import zlib
from dataclasses import dataclass

from app.encryption import Cipher, DecryptError

_MAGIC = 0x4C43  # "LC"
_VERSION = 1
_FLAG_ZLIB = 1
_FLAG_SEALED = 2
# magic, version, flags, created_at, expires_at (NaN = never), tokens, content-type length
_HEADER = struct.Struct("<HBBddIH")


@dataclass(slots=True, frozen=True)
class Entry:
    body: bytes
    content_type: str
    created_at: float
    expires_at: float | None
    tokens: int = 0

    def age(self, now: float) -> float:
        return max(0.0, now - self.created_at)

    def remaining_ttl(self, now: float) -> float | None:
        return None if self.expires_at is None else self.expires_at - now

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def new_entry(body: bytes, content_type: str, ttl_s: float | None, tokens: int = 0) -> Entry:
    now = time.time()
    return Entry(body, content_type, now, None if ttl_s is None else now + ttl_s, tokens)


class CodecError(ValueError):
    """Stored bytes are not an entry of this format (corrupt or foreign)."""


def encode(entry: Entry, compress_min_bytes: int | None = None, cipher: Cipher | None = None, key: str = "") -> bytes:
    """`key`: the cache key the entry is stored under (bound to it when sealed)."""
    body = entry.body
    flags = 0
    if compress_min_bytes is not None and len(body) >= compress_min_bytes:
        packed = zlib.compress(body, 6)
        if len(packed) < len(body):
            body, flags = packed, _FLAG_ZLIB
    if cipher is not None:
        flags |= _FLAG_SEALED
    ctype = entry.content_type.encode()
    expires = math.nan if entry.expires_at is None else entry.expires_at
    header = _HEADER.pack(_MAGIC, _VERSION, flags, entry.created_at, expires, min(entry.tokens, 0xFFFFFFFF), len(ctype))
    if cipher is not None:
        body = cipher.seal(body, b"".join((header, ctype, key.encode())))
    return b"".join((header, ctype, body))


def decode(data: bytes, cipher: Cipher | None = None, key: str = "") -> Entry:
    """Raises CodecError (not an entry) or DecryptError (does not open with `cipher`)."""
    try:
        magic, version, flags, created, expires, tokens, ctype_len = _HEADER.unpack_from(data)
    except struct.error as exc:
        raise CodecError("entry too short") from exc
    if magic != _MAGIC or version != _VERSION:
        raise CodecError("not an llmcache entry")
    start = _HEADER.size + ctype_len
    body = data[start:]
    if flags & _FLAG_SEALED:
        if cipher is None:
            raise DecryptError("unknown_key")  # encrypted, and encryption is off here
        body = cipher.open(body, data[:start] + key.encode())
    elif cipher is not None:
        raise DecryptError("unencrypted")
    if flags & _FLAG_ZLIB:
        try:
            body = zlib.decompress(body)
        except zlib.error as exc:
            raise CodecError("corrupt compressed body") from exc
    ctype = data[_HEADER.size : start].decode()
    return Entry(body, ctype, created, None if math.isnan(expires) else expires, tokens)


def body_view(data: bytes) -> memoryview | None:
    """The body inside encoded `data`, without a copy; None when it is stored compressed.
    (Only for `data` that `decode` accepts.)"""
    flags, ctype_len = _HEADER.unpack_from(data)[2::4]
    if flags & _FLAG_ZLIB:
        return None
    return memoryview(data)[_HEADER.size + ctype_len :]
