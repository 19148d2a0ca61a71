"""One fixture per tier type: every test in this folder runs against each of them.

Adding a tier = adding a factory to TIER_FACTORIES (starting its real server if any).
"""

from __future__ import annotations

import contextlib
import uuid
import warnings
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import quote

import botocore.session
import httpx
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerClient

from app.config import AzureBlobTierSettings, GCSTierSettings, RedisNode, RedisTierSettings, S3TierSettings
from app.tiers.azure_blob import AzureBlobTier
from app.tiers.base import Tier
from app.tiers.disk import DiskTier
from app.tiers.gcs import GCSTier
from app.tiers.local import LocalTier
from app.tiers.objects import EXPIRES_META, EXPIRES_META_AZURE
from app.tiers.redis import RedisTier
from app.tiers.s3 import S3Tier
from tests import servers

TierFactory = Callable[[pytest.FixtureRequest], Awaitable[Tier]]


async def local_tier(request: pytest.FixtureRequest) -> Tier:
    return LocalTier("local", max_entries=1000, max_bytes=64 * 1024 * 1024)


async def disk_tier(request: pytest.FixtureRequest) -> Tier:
    path = request.getfixturevalue("tmp_path")
    return DiskTier("disk", str(path / "cache"), max_bytes=256 * 1024 * 1024)


def _prefix(request: pytest.FixtureRequest) -> str:
    # Each test gets its own key space, so tests never see each other's entries.
    return f"t-{abs(hash(request.node.nodeid)):x}:"


async def redis_tier(request: pytest.FixtureRequest) -> Tier:
    server = request.getfixturevalue("redis_standalone")
    return RedisTier("redis", RedisTierSettings(type="redis", url=server.url, prefix=_prefix(request)))


async def redis_cluster_tier(request: pytest.FixtureRequest) -> Tier:
    cluster = request.getfixturevalue("redis_cluster")
    nodes = tuple(RedisNode(host=h, port=p) for h, p in cluster.startup_nodes)
    settings = RedisTierSettings(type="redis", startup_nodes=nodes, prefix=_prefix(request))
    return RedisTier("redis-cluster", settings)


# --- object stores ---------------------------------------------------------------------
# One emulator and one bucket per test run, started when a test first asks for it; each
# test gets its own `path` below the bucket, so tests never see each other's objects.

BUCKET = "llmcache-test"


@dataclass
class ObjectStore:
    """A running emulator with a bucket (or container), and a plain SDK client to look inside."""

    type: str
    config: dict[str, Any]  # the tier's settings, all but `path`
    list_names: Callable[[str], list[str]]
    put: Callable[[str, bytes, str | None], None]  # name, data, expiry metadata (None: none)

    def tier_config(self, path: str) -> dict[str, Any]:
        return {"type": self.type, **self.config, "path": path}

    def names(self, prefix: str) -> list[str]:
        return sorted(self.list_names(prefix))


def unique_path() -> str:
    # Leading and trailing slashes on purpose: the tiers must strip them.
    return f"/llmcache-tests/{uuid.uuid4().hex[:12]}/"


_running: dict[str, tuple[ExitStack, ObjectStore, list[int]]] = {}


@contextlib.contextmanager
def shared_store(kind: str, start: Callable[[], AbstractContextManager[ObjectStore]]) -> Iterator[ObjectStore]:
    """Share one store among every fixture asking for `kind`, so a second module's
    session fixture does not start a second emulator; the last user stops it."""
    if kind not in _running:
        stack = ExitStack()
        _running[kind] = (stack, stack.enter_context(start()), [0])
    stack, store, users = _running[kind]
    users[0] += 1
    try:
        yield store
    finally:
        users[0] -= 1
        if not users[0]:
            del _running[kind]
            stack.close()


@contextlib.contextmanager
def _s3_store() -> Iterator[ObjectStore]:
    with servers.moto_s3() as server:
        client = botocore.session.get_session().create_client(
            "s3", endpoint_url=server.endpoint_url, region_name=server.region,
            aws_access_key_id=server.access_key_id, aws_secret_access_key=server.secret_access_key,
        )
        with contextlib.closing(client):
            client.create_bucket(Bucket=BUCKET)

            def list_names(prefix: str) -> list[str]:
                pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
                return [item["Key"] for page in pages for item in page.get("Contents", ())]

            def put(name: str, data: bytes, expires: str | None = None) -> None:
                metadata = {} if expires is None else {EXPIRES_META: expires}
                client.put_object(Bucket=BUCKET, Key=name, Body=data, Metadata=metadata)

            config = {"bucket": BUCKET, "region": server.region, "endpoint_url": server.endpoint_url,
                      "access_key_id": server.access_key_id, "secret_access_key": server.secret_access_key}
            yield ObjectStore("s3", config, list_names, put)


@contextlib.contextmanager
def _gcs_store() -> Iterator[ObjectStore]:
    with servers.fake_gcs() as server, httpx.Client(base_url=server.endpoint, trust_env=False) as http:
        http.post("/storage/v1/b", params={"project": server.project}, json={"name": BUCKET}).raise_for_status()

        def list_names(prefix: str) -> list[str]:
            names: list[str] = []
            params = {"prefix": prefix}
            while True:
                page = http.get(f"/storage/v1/b/{BUCKET}/o", params=params).raise_for_status().json()
                names += [item["name"] for item in page.get("items", ())]
                if not page.get("nextPageToken"):
                    return names
                params = {"prefix": prefix, "pageToken": page["nextPageToken"]}

        def put(name: str, data: bytes, expires: str | None = None) -> None:
            http.post(f"/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "media", "name": name},
                      content=data).raise_for_status()
            if expires is not None:
                http.patch(f"/storage/v1/b/{BUCKET}/o/{quote(name, safe='')}",
                           json={"metadata": {EXPIRES_META: expires}}).raise_for_status()

        yield ObjectStore("gcs", {"bucket": BUCKET, "endpoint": server.endpoint}, list_names, put)


@contextlib.contextmanager
def _azure_store() -> Iterator[ObjectStore]:
    with servers.azurite() as server:
        container = ContainerClient.from_connection_string(server.connection_string, BUCKET)
        with container:
            with contextlib.suppress(ResourceExistsError):
                container.create_container()

            def list_names(prefix: str) -> list[str]:
                return list(container.list_blob_names(name_starts_with=prefix))

            def put(name: str, data: bytes, expires: str | None = None) -> None:
                metadata = None if expires is None else {EXPIRES_META_AZURE: expires}
                container.upload_blob(name, data, overwrite=True, metadata=metadata)

            config = {"connection_string": server.connection_string, "container": BUCKET}
            yield ObjectStore("azure_blob", config, list_names, put)


@pytest.fixture(scope="session")
def s3_store() -> Iterator[ObjectStore]:
    with shared_store("s3", _s3_store) as store:
        yield store


@pytest.fixture(scope="session")
def gcs_store() -> Iterator[ObjectStore]:
    with shared_store("gcs", _gcs_store) as store:
        yield store


@pytest.fixture(scope="session")
def azure_store() -> Iterator[ObjectStore]:
    with shared_store("azure_blob", _azure_store) as store:
        yield store


async def s3_tier(request: pytest.FixtureRequest) -> Tier:
    store: ObjectStore = request.getfixturevalue("s3_store")
    return S3Tier("s3", S3TierSettings.model_validate(store.tier_config(unique_path())))


async def gcs_tier(request: pytest.FixtureRequest) -> Tier:
    store: ObjectStore = request.getfixturevalue("gcs_store")
    return GCSTier("gcs", GCSTierSettings.model_validate(store.tier_config(unique_path())))


async def azure_blob_tier(request: pytest.FixtureRequest) -> Tier:
    store: ObjectStore = request.getfixturevalue("azure_store")
    # The SDK sends a single-shot upload as one bytes body, and aiohttp flags every bytes
    # body over 1 MiB with a ResourceWarning (ignored by default; pytest makes it an
    # error). Undone after the test, with the rest of its warning filters.
    warnings.filterwarnings("ignore", "Sending a large body directly", ResourceWarning)
    return AzureBlobTier("azure_blob", AzureBlobTierSettings.model_validate(store.tier_config(unique_path())))


TIER_FACTORIES: dict[str, TierFactory] = {
    "local": local_tier,
    "disk": disk_tier,
    "redis": redis_tier,
    "redis-cluster": redis_cluster_tier,
    "s3": s3_tier,
    "gcs": gcs_tier,
    "azure_blob": azure_blob_tier,
}


@pytest.fixture(params=sorted(TIER_FACTORIES))
async def tier(request: pytest.FixtureRequest) -> AsyncIterator[Tier]:
    made = await TIER_FACTORIES[request.param](request)
    await made.clear(None)
    try:
        yield made
    finally:
        await made.clear(None)
        await made.close()
