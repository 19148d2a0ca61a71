"""The embedded matrix index on real files: what survives a restart, a torn write, eviction
and expiry; the sign-bit prefilter of large contexts against exact search."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from app.config import QdrantSettings
from app.semantic import matrix
from app.semantic.index import Vector
from app.semantic.matrix import MatrixIndex
from app.semantic.qdrant import QdrantIndex
from app.semantic.vectorlog import Added, VectorLog, encode

DIMS = 16
FP = "f" * 64


def unit(seed: int, dims: int = DIMS) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dims).astype(np.float32)
    return vector / np.linalg.norm(vector)


def vector(key: str, seed: int, fp: str = FP, ns: str | None = None, ttl: float | None = 3600) -> Vector:
    return Vector(key, f"text {key}", fp, ns, unit(seed), ttl)


async def opened(path: Path, max_entries: int = 1000) -> MatrixIndex:
    index = MatrixIndex(str(path), "c", max_entries)
    await index.open(DIMS)
    return index


async def keys(index: MatrixIndex, seed: int, fp: str = FP) -> list[str]:
    return [c.key for c in await index.search(unit(seed), fp, 10, 0.99)]


async def test_entries_survive_a_restart(tmp_path: Path) -> None:
    index = await opened(tmp_path)
    await index.add(vector("a", 1))
    await index.add(vector("b", 2, fp="e" * 64))
    await index.add(vector("c", 3))
    await index.add(vector("c", 4))  # re-stored with another vector
    await index.close()
    index = await opened(tmp_path)
    assert await keys(index, 1) == ["a"]
    assert await keys(index, 2) == [] and await keys(index, 2, fp="e" * 64) == ["b"]
    assert await keys(index, 3) == [] and await keys(index, 4) == ["c"]
    assert index.entries() == 3
    await index.close()


async def test_a_namespace_cleared_stays_cleared(tmp_path: Path) -> None:
    index = await opened(tmp_path)
    await index.add(vector("alpha/a", 1, ns="alpha"))
    await index.add(vector("beta/b", 2, ns="beta"))
    await index.clear("alpha")
    await index.add(vector("alpha/c", 3, ns="alpha"))  # after the flush: kept
    await index.close()
    index = await opened(tmp_path)
    assert await keys(index, 1) == [] and await keys(index, 2) == ["beta/b"] and await keys(index, 3) == ["alpha/c"]
    await index.clear(None)
    await index.close()
    index = await opened(tmp_path)
    assert index.entries() == 0
    await index.close()


async def test_a_flush_before_the_first_lookup_reaches_the_file(tmp_path: Path) -> None:
    index = await opened(tmp_path)
    await index.add(vector("alpha/a", 1, ns="alpha"))
    await index.add(vector("b", 2))
    await index.close()
    index = MatrixIndex(str(tmp_path), "c", 1000)
    await index.clear("alpha")  # not opened: the embedder's dimensions are not known yet
    await index.open(DIMS)
    assert await keys(index, 1) == [] and await keys(index, 2) == ["b"]
    await index.close()


async def test_a_torn_write_at_the_end_is_cut_off(tmp_path: Path) -> None:
    index = await opened(tmp_path)
    for i in range(5):
        await index.add(vector(f"k{i}", i))
    await index.close()
    log_file = tmp_path / "c.vectors"
    whole = log_file.stat().st_size
    torn = encode(Added(FP, "torn", "t", None, float("inf"), unit(99)))
    log_file.write_bytes(log_file.read_bytes() + torn[: len(torn) // 2])  # a crash in the middle of an append
    index = await opened(tmp_path)
    assert [await keys(index, i) for i in range(5)] == [[f"k{i}"] for i in range(5)]
    assert await keys(index, 99) == []
    assert log_file.stat().st_size == whole  # cut, so the next append follows a whole record
    await index.add(vector("after", 7))
    await index.close()
    index = await opened(tmp_path)
    assert await keys(index, 7) == ["after"] and index.entries() == 6
    await index.close()


async def test_a_corrupted_record_ends_the_log_there(tmp_path: Path) -> None:
    index = await opened(tmp_path)
    for i in range(3):
        await index.add(vector(f"k{i}", i))
    await index.close()
    log_file = tmp_path / "c.vectors"
    data = bytearray(log_file.read_bytes())
    data[-10] ^= 0xFF  # a flipped bit in the last record fails its checksum
    log_file.write_bytes(bytes(data))
    index = await opened(tmp_path)
    assert [await keys(index, i) for i in range(3)] == [["k0"], ["k1"], []]
    await index.close()


async def test_the_oldest_entries_are_evicted(tmp_path: Path) -> None:
    index = await opened(tmp_path, max_entries=3)
    for i in range(5):
        await index.add(vector(f"k{i}", i, fp=f"{i % 2}" * 64))
    assert index.entries() == 3
    assert await keys(index, 0, "0" * 64) == [] and await keys(index, 1, "1" * 64) == []
    assert await keys(index, 4, "0" * 64) == ["k4"]
    await index.close()
    index = await opened(tmp_path, max_entries=3)
    assert index.entries() == 3 and await keys(index, 1, "1" * 64) == [] and await keys(index, 2, "0" * 64) == ["k2"]
    await index.close()
    index = await opened(tmp_path, max_entries=2)  # a lower bound applies at load
    assert index.entries() == 2 and await keys(index, 2, "0" * 64) == []
    await index.close()


async def test_expired_entries_are_swept_and_not_reloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(matrix, "SWEEP_INTERVAL_S", 0.0)
    index = await opened(tmp_path)
    await index.add(vector("short", 1, ttl=0.05))
    await index.add(vector("long", 2))
    end = time.monotonic() + 5
    while index.entries() > 1 and time.monotonic() < end:
        await asyncio.sleep(0.05)
        await index.add(vector("long", 2))  # a write runs the sweep
    assert index.entries() == 1 and await keys(index, 1) == []
    await index.close()
    index = await opened(tmp_path)
    assert index.entries() == 1 and await keys(index, 2) == ["long"]
    await index.close()


async def test_the_log_is_rewritten_when_mostly_dead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(matrix, "LOG_SLACK", 8)
    index = await opened(tmp_path)
    for i in range(200):
        await index.add(vector("same", i))
    await index.add(vector("other", 1000))
    await index.close()
    vector_log = VectorLog(tmp_path / "c.vectors", DIMS)
    records = sum(1 for _ in vector_log.load())
    vector_log.close()
    assert records <= 2 * 2 + 8 + 1
    index = await opened(tmp_path)
    assert await keys(index, 199) == ["same"] and await keys(index, 1000) == ["other"] and index.entries() == 2
    await index.close()


async def test_another_embedding_size_starts_empty(tmp_path: Path) -> None:
    index = await opened(tmp_path)
    await index.add(vector("a", 1))
    await index.close()
    index = MatrixIndex(str(tmp_path), "c", 1000)
    await index.open(DIMS * 2)
    assert index.entries() == 0
    await index.add(Vector("b", "b", FP, None, unit(2, DIMS * 2), None))
    assert [c.key for c in await index.search(unit(2, DIMS * 2), FP, 5, 0.99)] == ["b"]
    await index.close()


async def test_data_of_the_earlier_embedded_qdrant_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    earlier = QdrantIndex(QdrantSettings(path=str(tmp_path)))
    await earlier.open(DIMS)
    await earlier.add(vector("old", 1))
    await earlier.close()
    with caplog.at_level(logging.WARNING, "llmcache.semantic"):
        index = await opened(tmp_path)
    assert "earlier embedded Qdrant" in caplog.text
    assert index.entries() == 0 and await keys(index, 1) == []
    await index.add(vector("new", 2))
    assert await keys(index, 2) == ["new"]
    await index.close()


async def test_large_context_prefilter_finds_what_exact_search_finds() -> None:
    """Past RESCORED rows, sign bits pick the rows to score exactly (past INLINE_ROWS, in a thread)."""
    dims, rows = 384, matrix.INLINE_ROWS + 3000
    rng = np.random.default_rng(0)
    # clustered, like the questions of one application: cosine ~0.6 within a cluster
    centers = rng.standard_normal((50, dims)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    spread = 0.8 / np.sqrt(dims)
    data = centers[rng.integers(0, 50, rows)] + spread * rng.standard_normal((rows, dims)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    index = MatrixIndex(None, "c", rows)
    await index.open(dims)
    for i in range(rows):
        await index.add(Vector(f"k{i}", "t", FP, None, data[i], None))
    agree = 0
    for q in range(100):
        query = data[q * 7] + 0.5 / np.sqrt(dims) * rng.standard_normal(dims).astype(np.float32)
        query /= np.linalg.norm(query)
        exact = np.argsort(-(data @ query))[:5]
        found = await index.search(query, FP, 5, 0.0)
        agree += [c.key for c in found] == [f"k{i}" for i in exact]
        assert found[0].key == f"k{exact[0]}"
    assert agree >= 95
    await index.close()


async def test_a_second_process_on_the_same_path_keeps_to_memory(tmp_path: Path) -> None:
    """Another worker with the same `path` finds the log taken (the lock is per open file,
    so a second index in this process stands in for it)."""
    first = await opened(tmp_path)
    await first.add(vector("a", 1))
    second = await opened(tmp_path)
    await second.add(vector("b", 2))
    assert await keys(second, 2) == ["b"] and await keys(second, 1) == []
    await second.close()
    await first.close()
    index = await opened(tmp_path)
    assert await keys(index, 1) == ["a"] and await keys(index, 2) == []
    await index.close()
