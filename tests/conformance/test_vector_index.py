"""The vector index contract (app/semantic/index.py), run against every index: the
embedded matrix (in memory and on disk), qdrant-client (the class a Qdrant server uses,
here in its local mode) and RediSearch.

Adding an index = adding a factory to INDEX_KINDS.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import pytest

from app.config import QdrantSettings, RedisVectorSettings
from app.semantic.index import Vector, VectorIndex
from app.semantic.matrix import MatrixIndex
from app.semantic.qdrant import QdrantIndex
from app.semantic.redis import RedisIndex

DIMS = 32
IndexFactory = Callable[[pytest.FixtureRequest], Awaitable[VectorIndex]]


async def matrix_in_memory(request: pytest.FixtureRequest) -> VectorIndex:
    return MatrixIndex(None, "c", max_entries=1000)


async def matrix_on_disk(request: pytest.FixtureRequest) -> VectorIndex:
    return MatrixIndex(str(request.getfixturevalue("tmp_path")), "c", max_entries=1000)


async def qdrant_client(request: pytest.FixtureRequest) -> VectorIndex:
    return QdrantIndex(QdrantSettings(path=str(request.getfixturevalue("tmp_path") / "qdrant")))


async def redisearch(request: pytest.FixtureRequest) -> VectorIndex:
    server = request.getfixturevalue("redis_standalone")
    return RedisIndex(RedisVectorSettings(url=server.url, index=f"v-{uuid.uuid4().hex[:8]}"))


INDEX_KINDS: dict[str, tuple[IndexFactory, tuple[pytest.MarkDecorator, ...]]] = {
    "matrix": (matrix_in_memory, ()),
    "matrix-disk": (matrix_on_disk, ()),
    "qdrant-client": (qdrant_client, ()),
    "redis": (redisearch, (pytest.mark.redis,)),
}


@pytest.fixture(params=[pytest.param(name, marks=marks) for name, (_, marks) in INDEX_KINDS.items()])
async def index(request: pytest.FixtureRequest) -> AsyncIterator[VectorIndex]:
    made = await INDEX_KINDS[request.param][0](request)
    await made.open(DIMS)
    yield made
    await made.clear(None)
    await made.close()


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)
    return vector / np.linalg.norm(vector)


def near(base: np.ndarray, similarity: float, seed: int) -> np.ndarray:
    """A unit vector whose cosine with `base` is `similarity`."""
    other = unit(seed + 10_000)  # never base itself
    other -= other.dot(base) * base
    other /= np.linalg.norm(other)
    return similarity * base + np.sqrt(1 - similarity**2) * other


def vector(
    key: str, embedding: np.ndarray, fp: str = "f" * 64, ns: str | None = None, ttl: float | None = 60
) -> Vector:
    return Vector(key, f"text of {key}", fp, ns, embedding.astype(np.float32), ttl)


async def test_nearest_first_above_the_threshold(index: VectorIndex) -> None:
    base = unit(1)
    for key, similarity in (("k95", 0.95), ("k80", 0.80), ("k99", 0.99), ("k50", 0.5)):
        await index.add(vector(key, near(base, similarity, hash(key) % 1000)))
    found = await index.search(base, "f" * 64, 5, 0.7)
    assert [c.key for c in found] == ["k99", "k95", "k80"]
    assert [round(c.similarity, 2) for c in found] == [0.99, 0.95, 0.80]
    assert found[0].text == "text of k99"


async def test_limit(index: VectorIndex) -> None:
    base = unit(2)
    for i in range(8):
        await index.add(vector(f"k{i}", near(base, 0.9 + i / 100, i)))
    found = await index.search(base, "f" * 64, 3, 0.5)
    assert [c.key for c in found] == ["k7", "k6", "k5"]


async def test_only_the_same_fingerprint(index: VectorIndex) -> None:
    base = unit(3)
    await index.add(vector("theirs", base, fp="a" * 64))
    await index.add(vector("ours", near(base, 0.9, 4), fp="b" * 64))
    assert [c.key for c in await index.search(base, "b" * 64, 5, 0.5)] == ["ours"]
    assert await index.search(base, "c" * 64, 5, 0.0) == []


async def test_restoring_a_key_replaces_its_vector(index: VectorIndex) -> None:
    first, second = unit(5), unit(6)
    await index.add(vector("k", first))
    await index.add(vector("k", second))
    assert [c.key for c in await index.search(second, "f" * 64, 5, 0.9)] == ["k"]
    assert await index.search(first, "f" * 64, 5, 0.9) == []


async def test_clear_one_namespace(index: VectorIndex) -> None:
    base = unit(7)
    await index.add(vector("alpha/k1", base, ns="alpha"))
    await index.add(vector("beta/k2", near(base, 0.95, 8), ns="beta"))
    await index.add(vector("k3", near(base, 0.9, 9)))
    await index.clear("alpha")
    assert [c.key for c in await index.search(base, "f" * 64, 5, 0.5)] == ["beta/k2", "k3"]
    await index.clear(None)
    assert await index.search(base, "f" * 64, 5, 0.0) == []


async def test_expired_vectors_are_not_found(index: VectorIndex) -> None:
    if isinstance(index, QdrantIndex):
        pytest.skip("qdrant-client sweeps expired points in bulk; a match on one finds no exact entry")
    base = unit(10)
    await index.add(vector("short", base, ttl=0.2))
    await index.add(vector("long", near(base, 0.9, 11), ttl=60))
    end = time.monotonic() + 5
    while time.monotonic() < end:  # expiry is a moment, not a sleep length
        if [c.key for c in await index.search(base, "f" * 64, 5, 0.5)] == ["long"]:
            break
        await asyncio.sleep(0.05)
    assert [c.key for c in await index.search(base, "f" * 64, 5, 0.5)] == ["long"]


async def test_ping(index: VectorIndex) -> None:
    await index.ping()
