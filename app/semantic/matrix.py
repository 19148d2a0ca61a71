"""Embedded vectors: one float32 matrix per context, searched with numpy, logged to disk.

The embedded mode (`qdrant.url: null`) keeps each context fingerprint's vectors in a
contiguous matrix, so a lookup only ever reads its own context's rows:

* up to RESCORED rows, a search is one matrix-vector product (exact cosine);
* beyond, an exact product is bound by memory bandwidth (100k × 384 floats are 154 MB:
  13-18 ms on the 2-core bench machine) and, from a few thousand rows, by BLAS's two
  threads waiting for a busy core (8k rows: 0.05 ms quiet, 15 ms p50 under load). So each
  row also keeps its sign bits (48 bytes at 384 dimensions); a search ranks the rows by
  Hamming distance of the sign bits (numpy byte operations, one thread), then computes
  the exact cosine of the ~RESCORED nearest: ~1 ms at 100k. On real embeddings (100k
  rows, 1,841 paraphrase queries) the 5 found this way were the exact 5 in 8,807 of 8,808
  cases above cosine 0.5, and in all 3,842 above 0.8.

A row is written once; afterwards only its expiry changes (to DEAD when it is replaced,
evicted or cleared), so a search running in a worker thread reads a consistent matrix
while the event loop appends. Growing or compacting a context builds new arrays and
swaps them in. Expired rows are never returned and are swept every SWEEP_INTERVAL_S;
beyond `max_entries` the oldest entry of the index is evicted. On disk, every change is
one record appended to a log (vectorlog.py), replayed at open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from app.semantic.index import Candidate, Vector, VectorIndex, similarity_of_cosine
from app.semantic.vectorlog import Added, Cleared, Forgotten, Record, Vector32, VectorLog

log = logging.getLogger("llmcache.semantic")

RESCORED = 1_024  # rows whose exact cosine is computed: all of a smaller context
# Work on a context this small runs on the event loop: a hop to a worker thread costs
# about as much as the search itself (bench/semantic_latency.py --hop measures both).
INLINE_ROWS = 8_192
MIN_CAPACITY = 64
HEADROOM = 0.5  # a full context grows to live rows × 1.5 (dead rows dropped on the way)
SWEEP_INTERVAL_S = 60.0
LOG_SLACK = 4_096  # the log is rewritten once its dead records outnumber these and the live ones
DEAD = -np.inf  # the expiry of a row replaced, evicted or cleared
NEVER = np.inf
T = TypeVar("T")


class Rows:
    """One context: its vectors, their sign bits, and each row's entry."""

    __slots__ = ("count", "dead", "expires", "keys", "namespaces", "seqs", "signs", "texts", "vectors", "where")

    def __init__(self, dims: int, capacity: int) -> None:
        self.vectors = np.empty((capacity, dims), np.float32)
        self.signs = np.empty((words(dims), capacity), np.uint64)  # transposed: one pass per word
        self.expires = np.empty(capacity, np.float64)
        self.seqs = np.empty(capacity, np.int64)  # order of storing across the index
        self.keys: list[str] = []
        self.texts: list[str] = []
        self.namespaces: list[str | None] = []
        self.where: dict[str, int] = {}  # key → its live row
        self.count = 0
        self.dead = 0

    @property
    def capacity(self) -> int:
        return len(self.expires)

    @property
    def live(self) -> int:
        return self.count - self.dead

    def append(self, seq: int, key: str, text: str, namespace: str | None, embedding: Vector32, expires: float) -> None:
        row = self.count
        self.vectors[row] = embedding
        self.signs[:, row] = sign_bits(embedding)
        self.expires[row] = expires
        self.seqs[row] = seq
        self.keys.append(key)
        self.texts.append(text)
        self.namespaces.append(namespace)
        self.where[key] = row
        self.count = row + 1  # last: a concurrent search sees the row once it is whole

    def extend(self, seqs: list[int], entries: list[Added]) -> None:
        """Many rows at once (loading)."""
        start, end = self.count, self.count + len(entries)
        vectors = np.stack([added.embedding for added in entries]).astype(np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        self.vectors[start:end] = vectors
        self.signs[:, start:end] = sign_bits(vectors).T
        self.expires[start:end] = [added.expires for added in entries]
        self.seqs[start:end] = seqs
        for row, added in enumerate(entries, start):
            self.keys.append(added.key)
            self.texts.append(added.text)
            self.namespaces.append(added.namespace)
            self.where[added.key] = row
        self.count = end

    def kill(self, key: str) -> bool:
        row = self.where.pop(key, None)
        if row is None:
            return False
        self.expires[row] = DEAD
        self.dead += 1
        return True

    def resized(self) -> Rows:
        """The live rows (expired ones included until swept) in new arrays with headroom."""
        keep = np.flatnonzero(self.expires[: self.count] != DEAD)
        rows = Rows(self.vectors.shape[1], max(MIN_CAPACITY, int(len(keep) * (1 + HEADROOM)) + 1))
        n = len(keep)
        rows.vectors[:n] = self.vectors[keep]
        rows.signs[:, :n] = self.signs[:, keep]
        rows.expires[:n] = self.expires[keep]
        rows.seqs[:n] = self.seqs[keep]
        rows.keys = [self.keys[i] for i in keep]
        rows.texts = [self.texts[i] for i in keep]
        rows.namespaces = [self.namespaces[i] for i in keep]
        rows.where = {key: row for row, key in enumerate(rows.keys)}
        rows.count = n
        return rows

    def search(self, query: Vector32, limit: int, threshold: float, now: float) -> list[Candidate]:
        n = self.count
        alive = self.expires[:n] > now
        if n <= RESCORED:
            rows = None
            scores = self.vectors[:n] @ query
            scores[~alive] = -np.inf
        else:
            rows = nearest_by_signs(hamming(self.signs[:, :n], sign_bits(query)), alive, 64 * len(self.signs))
            scores = self.vectors[rows] @ query
            scores[~alive[rows]] = -np.inf
        above = np.flatnonzero(scores >= threshold)
        if len(above) > limit:
            above = above[np.argpartition(scores[above], -limit)[-limit:]]
        best = above[np.argsort(-scores[above], kind="stable")]
        found = best if rows is None else rows[best]
        return [
            Candidate(self.keys[row], self.texts[row], similarity_of_cosine(float(score)))
            for row, score in zip(found.tolist(), scores[best].tolist(), strict=True)
        ]

    def snapshot(self, fingerprint: str, count: int, now: float) -> Iterator[tuple[int, Added]]:
        """(seq, record) of each of the first `count` rows alive at `now`, for rewriting the log."""
        for row in np.flatnonzero(self.expires[:count] > now).tolist():
            namespace, expires = self.namespaces[row], float(self.expires[row])
            added = Added(fingerprint, self.keys[row], self.texts[row], namespace, expires, self.vectors[row])
            yield int(self.seqs[row]), added


def words(dims: int) -> int:
    return (dims + 63) // 64


def sign_bits(embeddings: Vector32) -> npt.NDArray[np.uint64]:
    """One row of 64-bit words per embedding (one row for a single embedding)."""
    dims = embeddings.shape[-1]
    bits = np.zeros((*embeddings.shape[:-1], words(dims) * 64), dtype=bool)
    bits[..., :dims] = embeddings > 0
    return np.packbits(bits, axis=-1).view(np.uint64)


def hamming(signs: npt.NDArray[np.uint64], query: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint16]:
    distance: npt.NDArray[np.uint16] = np.bitwise_count(signs[0] ^ query[0]).astype(np.uint16)
    for word in range(1, len(query)):
        distance += np.bitwise_count(signs[word] ^ query[word])
    return distance


def nearest_by_signs(distance: npt.NDArray[np.uint16], alive: npt.NDArray[np.bool_], bits: int) -> npt.NDArray[np.intp]:
    """About RESCORED rows of the smallest distances: the rows up to the distance where the
    count reaches RESCORED (a histogram of bits + 2 bins, faster than a partition)."""
    farthest = bits + 1
    distance[~alive] = farthest  # last; scored -inf if they are reached at all
    cumulative = np.cumsum(np.bincount(distance, minlength=farthest + 1))
    rows = np.flatnonzero(distance <= int(np.searchsorted(cumulative, RESCORED)))
    if len(rows) > 2 * RESCORED:  # many equal distances (duplicates)
        rows = rows[np.argpartition(distance[rows], RESCORED)[:RESCORED]]
    return rows


def normalised(embedding: np.ndarray) -> Vector32:
    vector = np.asarray(embedding, dtype=np.float32).ravel()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class MatrixIndex(VectorIndex):
    type = "qdrant"  # what the config calls the embedded mode

    def __init__(self, path: str | None, collection: str, max_entries: int) -> None:
        self.path = Path(path) / f"{collection}.vectors" if path else None
        self.max_entries = max_entries
        self._contexts: dict[str, Rows] = {}
        self._order: OrderedDict[tuple[str, str], None] = OrderedDict()  # (fingerprint, key), oldest first
        self._seq = 0
        self._log: VectorLog | None = None
        self._logged = 0  # records in the log, live or dead
        self._loading: asyncio.Future[None] | None = None
        self._mutating = asyncio.Lock()
        # One IO thread keeps the log's records in the order they were made.
        self._io = ThreadPoolExecutor(1, thread_name_prefix="llmcache-vectors-io")
        self._cpu = ThreadPoolExecutor(2, thread_name_prefix="llmcache-vectors")
        self._swept = time.monotonic()

    async def _in(self, executor: ThreadPoolExecutor, work: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, work, *args)

    # ------------------------------------------------------------------ opening

    async def open(self, dims: int) -> None:
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load(dims))
        # A lookup that times out while a large log loads abandons only its wait.
        await asyncio.shield(self._loading)

    async def _load(self, dims: int) -> None:
        if self.path is None:
            return
        if (self.path.parent / "meta.json").exists() or (self.path.parent / "collection").is_dir():
            log.warning(
                "%s holds data of the earlier embedded Qdrant, which is no longer read: the semantic index "
                "starts empty at %s (delete meta.json and collection/ there to reclaim the space)",
                self.path.parent,
                self.path.name,
            )
        vector_log = VectorLog(self.path, dims)
        try:
            contexts, order, seq = await self._in(self._io, self._replay, vector_log)
        except (OSError, ValueError) as exc:
            log.warning("semantic index %s cannot be read or written (%r): kept in memory only", self.path, exc)
            return
        self._contexts, self._order, self._seq, self._log = contexts, order, seq, vector_log
        self._logged = vector_log.records
        log.info("semantic index %s: %d entries in %d contexts", self.path, len(order), len(contexts))

    def _replay(self, vector_log: VectorLog) -> tuple[dict[str, Rows], OrderedDict[tuple[str, str], None], int]:
        """The log's live entries, oldest first (in the IO thread, before any other use)."""
        entries: OrderedDict[tuple[str, str], Added] = OrderedDict()
        for record in vector_log.load():
            if isinstance(record, Added):
                entries.pop((record.fingerprint, record.key), None)
                entries[(record.fingerprint, record.key)] = record
            elif isinstance(record, Forgotten):
                entries.pop((record.fingerprint, record.key), None)
            else:
                for name in [name for name, added in entries.items() if added.namespace == record.namespace]:
                    del entries[name]
        now = time.time()
        for name in [name for name, added in entries.items() if added.expires <= now]:
            del entries[name]
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
        grouped: dict[str, tuple[list[int], list[Added]]] = {}
        for seq, added in enumerate(entries.values()):
            seqs, members = grouped.setdefault(added.fingerprint, ([], []))
            seqs.append(seq)
            members.append(added)
        contexts: dict[str, Rows] = {}
        for fingerprint, (seqs, members) in grouped.items():
            rows = contexts[fingerprint] = Rows(vector_log.dims, max(MIN_CAPACITY, int(len(seqs) * (1 + HEADROOM))))
            rows.extend(seqs, members)
        if vector_log.records > 2 * len(entries) + LOG_SLACK:
            vector_log.rewrite(entries.values())
        return contexts, OrderedDict.fromkeys(entries), len(entries)

    # ------------------------------------------------------------------ reading

    async def search(self, embedding: np.ndarray, fingerprint: str, limit: int, threshold: float) -> list[Candidate]:
        if self._loading is None or not self._loading.done():
            await self.open(len(embedding))
        rows = self._contexts.get(fingerprint)
        if rows is None:
            return []
        query, now = normalised(embedding), time.time()
        if rows.count <= INLINE_ROWS:
            return rows.search(query, limit, threshold, now)
        return await self._in(self._cpu, rows.search, query, limit, threshold, now)

    # ------------------------------------------------------------------ writing

    async def add(self, vector: Vector) -> None:
        embedding = normalised(vector.embedding)
        if self._loading is None or not self._loading.done():
            await self.open(len(embedding))
        expires = NEVER if vector.ttl_s is None else time.time() + vector.ttl_s
        added = Added(vector.fingerprint, vector.key, vector.text, vector.namespace, expires, embedding)
        async with self._mutating:
            records: list[Record] = [added]
            name = (vector.fingerprint, vector.key)
            if name in self._order:  # re-stored: the new vector replaces the old
                del self._order[name]
                self._contexts[vector.fingerprint].kill(vector.key)
            while len(self._order) >= self.max_entries:
                oldest, _ = self._order.popitem(last=False)
                self._contexts[oldest[0]].kill(oldest[1])
                records.append(Forgotten(*oldest))
            rows = self._contexts.get(vector.fingerprint) or Rows(len(embedding), MIN_CAPACITY)
            if rows.count == rows.capacity:
                rows = rows.resized() if rows.count <= INLINE_ROWS else await self._in(self._cpu, rows.resized)
            self._contexts[vector.fingerprint] = rows
            self._seq += 1
            rows.append(self._seq, vector.key, vector.text, vector.namespace, embedding, expires)
            self._order[name] = None
            written = self._write(records)
        await written
        if time.monotonic() - self._swept > SWEEP_INTERVAL_S:
            self._swept = time.monotonic()
            await self._sweep()

    def _write(self, records: list[Record]) -> asyncio.Future[None]:
        """Queue records for the log now (so the log keeps the order of the changes); the
        future is awaited after the lock is let go."""
        loop = asyncio.get_running_loop()
        vector_log = self._log
        if vector_log is None:
            done: asyncio.Future[None] = loop.create_future()
            done.set_result(None)
            return done
        future = loop.run_in_executor(self._io, _append, vector_log, records)
        self._logged += len(records)
        if self._logged > 2 * len(self._order) + LOG_SLACK:
            # What changes from here on is appended after this rewrite, and a row killed
            # while it runs is either left out or forgotten by a later record.
            snapshot = [(fingerprint, rows, rows.count) for fingerprint, rows in self._contexts.items()]
            future = loop.run_in_executor(self._io, _rewrite, vector_log, snapshot)
            self._logged = len(self._order)
        return future

    async def _sweep(self) -> None:
        """Kill expired rows, compact contexts mostly dead, drop empty ones."""
        async with self._mutating:
            await self._in(self._cpu, self._sweep_now, time.time())

    def _sweep_now(self, now: float) -> None:
        for fingerprint, rows in list(self._contexts.items()):
            expired = np.flatnonzero((rows.expires[: rows.count] <= now) & (rows.expires[: rows.count] != DEAD))
            for row in expired.tolist():
                if rows.kill(rows.keys[row]):
                    self._order.pop((fingerprint, rows.keys[row]), None)
            self._tidy(fingerprint, rows)

    def _tidy(self, fingerprint: str, rows: Rows) -> None:
        if rows.live == 0:
            del self._contexts[fingerprint]
        elif rows.dead > max(rows.live, MIN_CAPACITY):
            self._contexts[fingerprint] = rows.resized()

    async def clear(self, namespace: str | None) -> None:
        if self._loading is None:
            await self._in(self._io, _clear_unopened, self.path, namespace)
            return
        await asyncio.shield(self._loading)
        async with self._mutating:
            if namespace is None:
                self._contexts.clear()
                self._order.clear()
                if self._log is not None:
                    self._logged = 0
                    await self._in(self._io, self._log.rewrite, [])
                return
            await self._in(self._cpu, self._clear_now, namespace)
            await self._write([Cleared(namespace)])

    def _clear_now(self, namespace: str) -> None:
        for fingerprint, rows in list(self._contexts.items()):
            for row, key in enumerate(rows.keys):
                if rows.namespaces[row] == namespace and rows.kill(key):
                    self._order.pop((fingerprint, key), None)
            self._tidy(fingerprint, rows)

    async def ping(self) -> None:
        if self._loading is not None and self._loading.done():
            self._loading.result()  # a load that failed says so

    async def close(self) -> None:
        if self._loading is not None and not self._loading.done():
            await asyncio.shield(self._loading)
        await self._in(self._io, _nothing)  # every record queued before is written
        if self._log is not None:
            self._log.close()
        self._io.shutdown(wait=False)
        self._cpu.shutdown(wait=False)

    def entries(self) -> int:
        return len(self._order)


def _append(vector_log: VectorLog, records: list[Record]) -> None:
    try:
        vector_log.append(records)
    except OSError as exc:
        log.warning("semantic index %s: cannot append (%r)", vector_log.path, exc)


def _nothing() -> None:
    return None


def _rewrite(vector_log: VectorLog, snapshot: list[tuple[str, Rows, int]]) -> None:
    now = time.time()
    alive = [item for fingerprint, rows, count in snapshot for item in rows.snapshot(fingerprint, count, now)]
    alive.sort(key=lambda item: item[0])
    try:
        vector_log.rewrite(added for _, added in alive)
    except OSError as exc:
        log.warning("semantic index %s: cannot rewrite (%r)", vector_log.path, exc)


def _clear_unopened(path: Path | None, namespace: str | None) -> None:
    """A flush before the first lookup: the log is changed without being loaded."""
    if path is None or not path.exists():
        return
    vector_log = VectorLog(path, 0)
    try:
        vector_log.lock()
    except OSError as exc:
        log.warning("semantic index %s is held by another process (%r): not flushed", path, exc)
        return
    try:
        if namespace is None:
            path.unlink()
        else:
            vector_log.append([Cleared(namespace)])
    finally:
        vector_log.close()
