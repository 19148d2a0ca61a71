"""Object-store tiers (S3, GCS, Azure Blob) behind the real proxy, on their emulators.

The tier contract itself runs in tests/conformance; these tests cover what only the
whole proxy shows: entries outliving the process that wrote them, expiry, flushes,
and a store that stops answering.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import ClientResponseError
from azure.core.exceptions import ResourceNotFoundError
from botocore.exceptions import ClientError
from pydantic import TypeAdapter

from app.config import TierSettings
from app.tiers import Tier, build_tier
from app.tiers.objects import ObjectNames, expires_at, is_expired
from tests import servers
from tests.conftest import ServedProxy, metric_value, wait_for
from tests.fake_upstream import FakeUpstream
from tests.object_stores import ObjectStore, unique_path

STORE_FIXTURES = {"s3": "s3_store", "gcs": "gcs_store", "azure_blob": "azure_store"}
LOCAL = {"type": "local"}


@pytest.fixture(params=[pytest.param(kind, marks=pytest.mark.object_store) for kind in sorted(STORE_FIXTURES)])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    found: ObjectStore = request.getfixturevalue(STORE_FIXTURES[request.param])
    return found


def ask(proxy: ServedProxy, content: str, headers: dict[str, str] | None = None) -> Any:
    """One chat completion; the raw response, for its headers and exact bytes."""
    return proxy.client().chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": content}],
        extra_headers=headers or {},
    )


def root(path: str) -> str:
    return path.strip("/") + "/"


def make_tier(config: dict[str, Any]) -> Tier:
    return build_tier(TypeAdapter(TierSettings).validate_python(config))


# --- the tiers on their own ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "root_", "name"),
    [
        ("llmcache", "llmcache/", "llmcache/ns/k"),
        ("/a/b/", "a/b/", "a/b/ns/k"),
        ("", "", "ns/k"),
    ],
)
def test_object_names_below_path(path: str, root_: str, name: str) -> None:
    names = ObjectNames(path)
    assert (names.root, names.name("ns/k")) == (root_, name)
    assert names.prefix(None) == root_
    assert names.prefix("ns") == root_ + "ns/"


def test_expiry_metadata() -> None:
    assert expires_at(None) == "never" and not is_expired("never") and not is_expired(None)
    assert expires_at(1.5, now=100.0) == "101.500"
    assert not is_expired("101.500", now=101.4) and is_expired("101.500", now=101.5)
    assert is_expired("soon")  # unreadable: cannot prove the entry fresh


async def test_objects_written_by_others_follow_their_metadata(store: ObjectStore) -> None:
    """No expiry metadata: never expires (on GCS this also takes the metadata fallback);
    an unreadable expiry: a miss."""
    path = unique_path()
    tier = make_tier(store.tier_config(path))
    try:
        store.put(root(path) + "plain", b"no metadata", None)
        assert await tier.get("plain") == b"no metadata"
        store.put(root(path) + "garbled", b"bad expiry", "tomorrow")
        assert await tier.get("garbled") is None
        store.put(root(path) + "fresh", b"later", str(time.time() + 60))
        assert await tier.get("fresh") == b"later"
    finally:
        await tier.clear(None)
        await tier.close()


async def test_ping_fails_without_the_bucket(store: ObjectStore) -> None:
    config = store.tier_config(unique_path())
    config["container" if store.type == "azure_blob" else "bucket"] = "no-such-bucket"
    tier = make_tier(config)
    try:
        with pytest.raises((ClientError, ClientResponseError, ResourceNotFoundError)):
            await tier.ping()
        assert (await tier.stats()).entries is None
    finally:
        await tier.close()


# --- through the proxy --------------------------------------------------------------------


def test_entry_outlives_the_proxy_that_wrote_it(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, store: ObjectStore
) -> None:
    path = unique_path()
    tiers = [LOCAL, store.tier_config(path)]
    writer = serve(cache={"tiers": tiers})
    first = ask(writer, "remember me")
    assert first.headers["x-cache-status"] == "miss"
    writer.drain()
    assert len(store.names(root(path))) == 1

    reader = serve(cache={"tiers": tiers})  # a new process: its local tier is empty
    second = ask(reader, "remember me")
    assert second.headers["x-cache-status"] == "hit"
    assert second.content == first.content
    assert fake.chat_calls() == 1


def test_expired_entry_is_a_miss_and_its_object_goes(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, store: ObjectStore
) -> None:
    path = unique_path()
    proxy = serve(cache={"tiers": [LOCAL, store.tier_config(path)]})
    assert ask(proxy, "short-lived", {"x-cache-ttl": "1"}).headers["x-cache-status"] == "miss"
    proxy.drain()
    assert len(store.names(root(path))) == 1

    def expired_and_removed() -> bool:
        # no-store: the miss must not write the entry back.
        status = ask(proxy, "short-lived", {"x-cache-no-store": "1"}).headers["x-cache-status"]
        return status == "miss" and not store.names(root(path))

    assert wait_for(expired_and_removed, deadline_s=10)


def test_flush_removes_one_namespace_then_everything_under_path(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, store: ObjectStore
) -> None:
    path = unique_path()
    prefix = root(path)
    proxy = serve(cache={"tiers": [LOCAL, store.tier_config(path)]})
    for content, namespace in (("a", "x"), ("b", "x"), ("c", "y"), ("d", None)):
        ask(proxy, content, {"x-cache-namespace": namespace} if namespace else None)
    proxy.drain()
    # Objects that are not the cache's: beside the path, and under a longer name sharing its prefix.
    outside = [f"elsewhere-{uuid.uuid4().hex[:8]}/keep", prefix.rstrip("/") + "-sibling/keep"]
    for name in outside:
        store.put(name, b"not ours", None)
    assert len(store.names(prefix + "x/")) == 2
    assert len(store.names(prefix)) == 4

    with proxy.admin() as admin:
        flushed = admin.post("/cache/flush", json={"namespace": "x"})
        assert flushed.status_code == 200
        assert flushed.json()["deleted"] == 2
        assert store.names(prefix + "x/") == []
        assert len(store.names(prefix + "y/")) == 1
        assert len(store.names(prefix)) == 2

        assert admin.post("/cache/flush").status_code == 200
    assert store.names(prefix) == []
    for name in outside:
        assert store.names(name) == [name]


def test_delete_one_key_removes_its_object(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, store: ObjectStore
) -> None:
    path = unique_path()
    proxy = serve(cache={"tiers": [LOCAL, store.tier_config(path)]})
    key = ask(proxy, "delete me", {"x-cache-namespace": "team"}).headers["x-cache-key"]
    proxy.drain()
    assert store.names(root(path)) == [root(path) + key]
    with proxy.admin() as admin:
        assert admin.delete(f"/cache/keys/{key}").json() == {"deleted": 1}
    assert store.names(root(path)) == []


# --- a store that stops answering -------------------------------------------------------


def silent_tier(kind: str, port: int) -> dict[str, Any]:
    endpoint = f"http://{servers.HOST}:{port}"
    if kind == "s3":
        return {
            "type": "s3",
            "bucket": "silent",
            "region": "us-east-1",
            "endpoint_url": endpoint,
            "access_key_id": "key",
            "secret_access_key": "secret",
        }
    if kind == "gcs":
        return {"type": "gcs", "bucket": "silent", "endpoint": endpoint}
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName={servers.AZURITE_ACCOUNT_NAME};"
        f"AccountKey={servers.AZURITE_ACCOUNT_KEY};BlobEndpoint={endpoint}/{servers.AZURITE_ACCOUNT_NAME};"
    )
    return {"type": "azure_blob", "container": "silent", "connection_string": connection_string}


def median_miss_s(proxy: ServedProxy, label: str, count: int = 8) -> float:
    durations = []
    for i in range(count):
        started = time.perf_counter()
        response = ask(proxy, f"{label} {i}")
        durations.append(time.perf_counter() - started)
        assert response.headers["x-cache-status"] == "miss"
    return statistics.median(durations)


def tier_operations(proxy: ServedProxy, tier: str, op: str, result: str) -> float:
    with proxy.admin() as http:
        text = http.get("/metrics").text
    return metric_value(text, "llmcache_tier_operations_total", op=op, result=result, tier=tier)


@pytest.mark.parametrize("kind", sorted(STORE_FIXTURES))
def test_a_hanging_store_keeps_misses_fast(serve: Callable[..., ServedProxy], fake: FakeUpstream, kind: str) -> None:
    with servers.silent_port() as port:
        hanging = serve(cache={"tiers": [LOCAL, silent_tier(kind, port)]})
        local_only = serve(cache={"tiers": [LOCAL]})
        slow = median_miss_s(hanging, f"hanging {kind}")
        fast = median_miss_s(local_only, f"local {kind}")
        # The first call waits out the tier's timeout and opens its breaker; the rest skip it.
        assert slow <= fast + 0.150, (slow, fast)
        assert ask(hanging, f"hanging {kind} 3").headers["x-cache-status"] == "hit"
        assert tier_operations(hanging, kind, "get", "timeout") >= 1  # it did hang, not refuse


def test_a_store_that_refuses_connections_is_a_miss(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    with servers.silent_port() as port:
        pass  # closed again: nothing listens there now
    proxy = serve(cache={"tiers": [LOCAL, silent_tier("s3", port)]})
    assert ask(proxy, "refused").headers["x-cache-status"] == "miss"
    assert ask(proxy, "refused").headers["x-cache-status"] == "hit"
    assert fake.chat_calls() == 1
    assert tier_operations(proxy, "s3", "get", "error") == 1
