"""Smoke tests for tests/servers.py: one real client round trip per server.

The object-store emulators (moto, fake-gcs-server, Azurite) are exercised by
tests/conformance and tests/test_object_tiers.py, through the tiers' own clients.

A missing client library or server package skips the corresponding test; a
server that is installed but fails to start is a failure.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TypeVar

import pytest

# Works whether or not tests/ is a package (rootdir vs. tests/ on sys.path).
try:
    from . import servers
except ImportError:
    import servers  # type: ignore[no-redef]

T = TypeVar("T")


def _start(cm: AbstractContextManager[T]) -> Iterator[T]:
    """Enter a servers.* context manager, turning ServerUnavailable into a skip."""
    try:
        info = cm.__enter__()
    except servers.ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield info
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture(scope="session")
def redis_srv() -> Iterator[servers.RedisInfo]:
    yield from _start(servers.redis_server())


@pytest.fixture(scope="session")
def redis_search_srv() -> Iterator[servers.RedisInfo]:
    yield from _start(servers.redis_server(modules=True))


@pytest.fixture(scope="session")
def redis_cluster_srv() -> Iterator[servers.ClusterInfo]:
    yield from _start(servers.redis_cluster(3))


# ---------------------------------------------------------------------------


def test_free_port_respects_max_and_never_repeats() -> None:
    ports = {servers.free_port(max_port=55535, also_free=(10000,)) for _ in range(20)}
    assert len(ports) == 20
    assert all(1024 < p <= 55535 for p in ports)


@pytest.mark.redis
def test_redis_set_get(redis_srv: servers.RedisInfo) -> None:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(redis_srv.url)
    try:
        assert client.set("llmcache:smoke", b"\x00value")
        assert client.get("llmcache:smoke") == b"\x00value"
        # Plain server: no modules loaded.
        assert client.module_list() == []
    finally:
        client.close()


@pytest.mark.redis
@pytest.mark.asyncio
async def test_redis_restart_same_port_client_reconnects() -> None:
    redis_asyncio = pytest.importorskip("redis.asyncio")
    redis_exceptions = pytest.importorskip("redis.exceptions")
    from redis.asyncio.retry import Retry  # the sync Retry silently never retries async calls
    from redis.backoff import ExponentialBackoff

    # Own server: this test takes it down, which must not disturb the shared one.
    with servers.redis_server() as srv:
        # Short retry budget: the default backoff would spend seconds on the down phase.
        client = redis_asyncio.Redis(
            host=srv.host,
            port=srv.port,
            socket_timeout=2,
            socket_connect_timeout=1,
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 2),
        )
        try:
            await client.set("k", "before")
            port = srv.port
            srv.stop(kill=True)
            assert not srv.running
            with pytest.raises((redis_exceptions.ConnectionError, redis_exceptions.TimeoutError)):
                await client.get("k")
            srv.start()
            assert srv.port == port and srv.running
            # Same client object, no manual reconnect; data is gone (no persistence).
            assert await client.get("k") is None
            await client.set("k", "after")
            assert await client.get("k") == b"after"
            srv.restart()
            assert await client.ping()
        finally:
            await client.aclose()


@pytest.mark.redis
def test_redis_cluster_spreads_keys(redis_cluster_srv: servers.ClusterInfo) -> None:
    redis = pytest.importorskip("redis")
    from redis.cluster import ClusterNode, RedisCluster

    assert len(redis_cluster_srv.startup_nodes) == 3
    assert all(port <= 55535 for _, port in redis_cluster_srv.startup_nodes)
    rc = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in redis_cluster_srv.startup_nodes])
    try:
        for i in range(50):
            rc.set(f"key:{i}", i)
        assert [int(rc.get(f"key:{i}")) for i in range(50)] == list(range(50))
    finally:
        rc.close()
    per_node = []
    for node in redis_cluster_srv.nodes:
        c = redis.Redis(host=node.host, port=node.port)
        try:
            per_node.append(c.dbsize())
        finally:
            c.close()
    assert sum(per_node) == 50
    assert all(n > 0 for n in per_node), per_node


def _vec(*xs: float) -> bytes:
    return struct.pack(f"<{len(xs)}f", *xs)


@pytest.mark.redis
def test_redisearch_vector_knn_with_tag_filter(redis_search_srv: servers.RedisInfo) -> None:
    redis = pytest.importorskip("redis")
    # RESP2 pins the reply shape parsed below (redis-py 8 defaults to RESP3 maps).
    client = redis.Redis.from_url(redis_search_srv.url, protocol=2)
    try:
        modules = {m[b"name"] for m in client.module_list()}
        assert modules == {b"search", b"ReJSON"}
        client.execute_command(
            "FT.CREATE",
            "idx",
            "ON",
            "HASH",
            "PREFIX",
            "1",
            "doc:",
            "SCHEMA",
            "model",
            "TAG",
            "emb",
            "VECTOR",
            "HNSW",
            "6",
            "TYPE",
            "FLOAT32",
            "DIM",
            "4",
            "DISTANCE_METRIC",
            "COSINE",
        )
        client.hset("doc:1", mapping={"model": "a", "emb": _vec(1, 0, 0, 0)})
        client.hset("doc:2", mapping={"model": "b", "emb": _vec(1, 0.1, 0, 0)})  # nearest, wrong tag
        client.hset("doc:3", mapping={"model": "a", "emb": _vec(0, 1, 0, 0)})
        query = _vec(1, 0.1, 0, 0)

        def knn(filter_: str) -> list[object]:
            return client.execute_command(
                "FT.SEARCH",
                "idx",
                f"{filter_}=>[KNN 1 @emb $vec AS score]",
                "PARAMS",
                "2",
                "vec",
                query,
                "SORTBY",
                "score",
                "RETURN",
                "2",
                "score",
                "model",
                "DIALECT",
                "2",
            )

        unfiltered = knn("*")
        assert unfiltered[0] == 1 and unfiltered[1] == b"doc:2"
        filtered = knn("(@model:{a})")
        assert filtered[0] == 1 and filtered[1] == b"doc:1"
        fields = dict(zip(filtered[2][::2], filtered[2][1::2], strict=True))
        assert fields[b"model"] == b"a"
        assert float(fields[b"score"]) < 0.01
    finally:
        client.close()
