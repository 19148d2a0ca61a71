"""The matrix index on disk: an append-only log of what was stored, forgotten and cleared.

One file per index, `<path>/<collection>.vectors`: a 12-byte header (magic, dimensions),
then records, each `length (u32) | crc32 (u32) | body`. A write appends one record (an
entry is ~1.6 kB at 384 dimensions), never rewrites the file; a crash can only leave a
torn record at the end, which fails its length or checksum and is cut off on the next
load, so what was written before it is never lost. When dead records outnumber live
ones the file is rewritten from memory, into a temporary file that is fsynced and then
renamed over the log: a crash during the rewrite leaves the old log whole.

Appends are not fsynced (a cache can lose its last seconds in a power cut; a killed
process loses nothing, the kernel has the bytes). One process writes a log at a time: it
holds an exclusive lock on `<collection>.vectors.lock`, and a second process (another
worker on the same `path`) finds it taken and keeps its vectors in memory only.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

log = logging.getLogger("llmcache.semantic")

MAGIC = b"LLMVEC01"
HEADER = struct.Struct("<8sI")  # magic, dimensions
FRAME = struct.Struct("<II")  # body length, crc32 of the body
ADD = struct.Struct("<BdHIIH")  # op, expires (unix s, inf: never), lengths of fp, key, text, namespace
NAMED = struct.Struct("<BHI")  # op, lengths of the two names (fp and key, or namespace and nothing)
OP_ADD, OP_FORGET, OP_CLEAR = 1, 2, 3
NO_NAMESPACE = ""  # namespaces are never empty (types.NAMESPACE_PATTERN)

Vector32 = npt.NDArray[np.float32]


@dataclass(slots=True)
class Added:
    fingerprint: str
    key: str
    text: str
    namespace: str | None
    expires: float
    embedding: Vector32


@dataclass(slots=True, frozen=True)
class Forgotten:
    fingerprint: str
    key: str


@dataclass(slots=True, frozen=True)
class Cleared:
    namespace: str


Record = Added | Forgotten | Cleared


def encode(record: Record) -> bytes:
    if isinstance(record, Added):
        fp, key, text = (s.encode() for s in (record.fingerprint, record.key, record.text))
        ns = (record.namespace or NO_NAMESPACE).encode()
        head = ADD.pack(OP_ADD, record.expires, len(fp), len(key), len(text), len(ns))
        body = b"".join((head, fp, key, text, ns, np.asarray(record.embedding, dtype="<f4").tobytes()))
    elif isinstance(record, Forgotten):
        fp, key = record.fingerprint.encode(), record.key.encode()
        body = NAMED.pack(OP_FORGET, len(fp), len(key)) + fp + key
    else:
        ns = record.namespace.encode()
        body = NAMED.pack(OP_CLEAR, len(ns), 0) + ns
    return FRAME.pack(len(body), zlib.crc32(body)) + body


def decode(body: memoryview, dims: int) -> Record:
    if body[0] == OP_ADD:
        _, expires, *lengths = ADD.unpack_from(body)
        fp, key, text, ns = _strings(body, ADD.size, lengths)
        start = ADD.size + sum(lengths)
        embedding = np.frombuffer(body, dtype="<f4", count=dims, offset=start)  # a view: copy to keep
        return Added(fp, key, text, ns or None, expires, embedding)
    op, first, second = NAMED.unpack_from(body)
    names = _strings(body, NAMED.size, (first, second))
    if op == OP_FORGET:
        return Forgotten(names[0], names[1])
    if op == OP_CLEAR:
        return Cleared(names[0])
    raise ValueError(f"unknown record type {op}")


def _strings(body: memoryview, offset: int, lengths: Iterable[int]) -> list[str]:
    strings = []
    for length in lengths:
        strings.append(bytes(body[offset : offset + length]).decode())
        offset += length
    return strings


class VectorLog:
    """One index's log file. Not thread-safe: the index calls it from one thread only."""

    def __init__(self, path: Path, dims: int) -> None:
        self.path = path
        self.dims = dims
        self.records = 0  # in the file now, live or dead
        self._temporary = path.with_name(path.name + ".tmp")
        self._lock: int | None = None

    def load(self) -> Iterator[Record]:
        """The records of a readable log, cutting off a torn end; a log of other dimensions
        (another embedding model) or of another format is replaced by an empty one.
        OSError if another process holds the log."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock()
        self._temporary.unlink(missing_ok=True)  # a rewrite that never finished
        data = self.path.read_bytes() if self.path.exists() else b""
        if len(data) < HEADER.size or HEADER.unpack_from(data) != (MAGIC, self.dims):
            if data:
                log.warning("semantic index %s is not a %d-dimension vector log: starting empty", self.path, self.dims)
            self._rewrite([])
            return
        view = memoryview(data)
        offset = HEADER.size
        while offset + FRAME.size <= len(data):
            length, crc = FRAME.unpack_from(data, offset)
            body = view[offset + FRAME.size : offset + FRAME.size + length]
            if len(body) < length or zlib.crc32(body) != crc:
                break
            try:
                record = decode(body, self.dims)
            except (ValueError, struct.error, UnicodeDecodeError):
                break
            offset += FRAME.size + length
            self.records += 1
            yield record
        if offset < len(data):
            log.warning("semantic index %s: cut a torn record at byte %d of %d", self.path, offset, len(data))
            with open(self.path, "r+b") as file:
                file.truncate(offset)

    def append(self, records: list[Record]) -> None:
        with open(self.path, "ab") as file:
            file.write(b"".join(encode(r) for r in records))  # one write: a crash tears only its end
        self.records += len(records)

    def rewrite(self, records: Iterable[Record]) -> None:
        """Replace the log by these records, atomically."""
        self.records = 0
        self._rewrite(records)

    def lock(self) -> None:
        """Take the log for this process; OSError if another one has it."""
        self._lock = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # lets the lock go
            self._lock = None

    def _rewrite(self, records: Iterable[Record]) -> None:
        temporary = self._temporary
        with open(temporary, "wb") as file:
            file.write(HEADER.pack(MAGIC, self.dims))
            batch: list[bytes] = []
            for record in records:
                batch.append(encode(record))
                self.records += 1
                if len(batch) >= 1024:
                    file.write(b"".join(batch))
                    batch.clear()
            file.write(b"".join(batch))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        _fsync_directory(self.path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
