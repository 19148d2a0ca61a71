"""The object-store emulators as the tests use them: one bucket (or container) each,
and a plain SDK client to look inside it.

One emulator and one bucket per test run, started when a test first asks for it (the
session fixtures in tests/conftest.py); each test gets its own `path` below the bucket,
so tests never see each other's objects.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import botocore.session
import httpx
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerClient

from app.tiers.objects import EXPIRES_META, EXPIRES_META_AZURE
from tests import servers

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


@contextlib.contextmanager
def s3_store() -> Iterator[ObjectStore]:
    with servers.moto_s3() as server:
        client = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=server.endpoint_url,
            region_name=server.region,
            aws_access_key_id=server.access_key_id,
            aws_secret_access_key=server.secret_access_key,
        )
        with contextlib.closing(client):
            client.create_bucket(Bucket=BUCKET)

            def list_names(prefix: str) -> list[str]:
                pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
                return [item["Key"] for page in pages for item in page.get("Contents", ())]

            def put(name: str, data: bytes, expires: str | None = None) -> None:
                metadata = {} if expires is None else {EXPIRES_META: expires}
                client.put_object(Bucket=BUCKET, Key=name, Body=data, Metadata=metadata)

            config = {
                "bucket": BUCKET,
                "region": server.region,
                "endpoint_url": server.endpoint_url,
                "access_key_id": server.access_key_id,
                "secret_access_key": server.secret_access_key,
            }
            yield ObjectStore("s3", config, list_names, put)


@contextlib.contextmanager
def gcs_store() -> Iterator[ObjectStore]:
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
            http.post(
                f"/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "media", "name": name}, content=data
            ).raise_for_status()
            if expires is not None:
                http.patch(
                    f"/storage/v1/b/{BUCKET}/o/{quote(name, safe='')}", json={"metadata": {EXPIRES_META: expires}}
                ).raise_for_status()

        yield ObjectStore("gcs", {"bucket": BUCKET, "endpoint": server.endpoint}, list_names, put)


@contextlib.contextmanager
def azure_store() -> Iterator[ObjectStore]:
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
