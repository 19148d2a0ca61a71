"""Entry ⇄ bytes. Tiers store opaque bytes; only this module knows the layout.

Layout: a fixed struct header, the content type, the entry's tags (newline-joined), then
the body (zlib-compressed when the flag says so). A fixed header keeps decoding on the hit
path to one `unpack_from`. Version 1 entries (no token split, no tags) are still read.

With a `Cipher` the body is sealed (compressed first: ciphertext does not compress). The
header, content type and tags stay readable — expiry, size, token counts and tags are
what TTL, stats, money and invalidation need, and they say nothing of the answer — but they are authenticated together
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
_VERSION = 2
_FLAG_ZLIB = 1
_FLAG_SEALED = 2
# magic, version, flags, created_at, expires_at (NaN = never), total tokens, content-type length
_HEADER_V1 = struct.Struct("<HBBddIH")
# ... then input, output and cached input tokens, and the tags' length
_HEADER = struct.Struct("<HBBddIHIIIH")
_U32 = 0xFFFFFFFF
_TAG_SEPARATOR = "\n"


@dataclass(slots=True, frozen=True)
class Usage:
    """The tokens an answer cost upstream: what serving it again saves (`app/prices.py`).
    `cached_input` is the part of `input` the provider billed at its cached-input price."""

    total: int = 0
    input: int = 0
    output: int = 0
    cached_input: int = 0


NO_USAGE = Usage()


@dataclass(slots=True, frozen=True)
class Entry:
    body: bytes
    content_type: str
    created_at: float
    expires_at: float | None
    usage: Usage = NO_USAGE
    tags: tuple[str, ...] = ()

    @property
    def tokens(self) -> int:
        return self.usage.total

    def age(self, now: float) -> float:
        return max(0.0, now - self.created_at)

    def remaining_ttl(self, now: float) -> float | None:
        return None if self.expires_at is None else self.expires_at - now

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def new_entry(
    body: bytes, content_type: str, ttl_s: float | None, usage: Usage = NO_USAGE, tags: tuple[str, ...] = ()
) -> Entry:
    now = time.time()
    return Entry(body, content_type, now, None if ttl_s is None else now + ttl_s, usage, tags)


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
    tags = _TAG_SEPARATOR.join(entry.tags).encode()
    expires = math.nan if entry.expires_at is None else entry.expires_at
    usage = entry.usage
    header = _HEADER.pack(
        _MAGIC,
        _VERSION,
        flags,
        entry.created_at,
        expires,
        min(usage.total, _U32),
        len(ctype),
        min(usage.input, _U32),
        min(usage.output, _U32),
        min(usage.cached_input, _U32),
        len(tags),
    )
    if cipher is not None:
        body = cipher.seal(body, b"".join((header, ctype, tags, key.encode())))
    return b"".join((header, ctype, tags, body))


def decode(data: bytes, cipher: Cipher | None = None, key: str = "") -> Entry:
    """Raises CodecError (not an entry) or DecryptError (does not open with `cipher`)."""
    try:
        if len(data) > 2 and data[2] == _VERSION:  # the version byte: one unpack on the hit path
            magic, version, flags, created, expires, total, ctype_len, input_tokens, output_tokens, cached, tags_len = (
                _HEADER.unpack_from(data)
            )
            ctype_at = _HEADER.size
        else:
            magic, version, flags, created, expires, total, ctype_len = _HEADER_V1.unpack_from(data)
            input_tokens = output_tokens = cached = tags_len = 0
            ctype_at = _HEADER_V1.size
    except struct.error as exc:
        raise CodecError("entry too short") from exc
    if magic != _MAGIC or version not in (1, _VERSION):
        raise CodecError("not an llmcache entry")
    tags_at = ctype_at + ctype_len
    start = tags_at + tags_len
    if start > len(data):
        raise CodecError("entry too short")
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
    try:
        ctype = data[ctype_at:tags_at].decode()
        tags = tuple(data[tags_at:start].decode().split(_TAG_SEPARATOR)) if tags_len else ()
    except UnicodeDecodeError as exc:
        raise CodecError("corrupt content type or tags") from exc
    usage = Usage(total, input_tokens, output_tokens, cached) if total or input_tokens or output_tokens else NO_USAGE
    return Entry(body, ctype, created, None if math.isnan(expires) else expires, usage, tags)


def body_view(data: bytes) -> memoryview | None:
    """The body inside encoded `data`, without a copy; None when it is stored compressed.
    (Only for `data` that `decode` accepts.)"""
    _, version, flags, _, _, _, ctype_len = _HEADER_V1.unpack_from(data)
    if flags & _FLAG_ZLIB:
        return None
    if version == _VERSION:
        return memoryview(data)[_HEADER.size + ctype_len + _HEADER.unpack_from(data)[10] :]
    return memoryview(data)[_HEADER_V1.size + ctype_len :]
