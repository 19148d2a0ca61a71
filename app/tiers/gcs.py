"""Google Cloud Storage tier, on gcloud-aio-storage (aiohttp, JSON API).

One object per entry (see app/tiers/objects.py). The bucket must exist: the operator
creates it, with a lifecycle rule that removes objects no read comes back for. Each
object also carries its expiry as `customTime`, so a `daysSinceCustomTime` rule can
delete exactly the expired ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import ClientResponseError
from gcloud.aio.storage import Storage

from app.config import GCSTierSettings
from app.tiers.base import CacheKey, Tier, TierStats
from app.tiers.objects import (
    EXPIRES_META,
    NEVER,
    READ_TIMEOUT_S,
    Cleaner,
    LazyClient,
    ObjectNames,
    delete_each,
    expires_at,
    is_expired,
)

_EXPIRES_HEADER = f"x-goog-meta-{EXPIRES_META}"
_PRECONDITION_FAILED = 412
_TIMEOUT_S = int(READ_TIMEOUT_S)  # gcloud-aio takes whole seconds


class GCSTier(Tier):
    type = "gcs"

    def __init__(self, name: str, settings: GCSTierSettings) -> None:
        super().__init__(name)
        self.settings = settings
        self.bucket = settings.bucket
        self.names = ObjectNames(settings.path)
        self._client: LazyClient[Storage] = LazyClient(self._open, _close)
        self._cleaner = Cleaner(name)

    async def _open(self) -> Storage:
        s = self.settings
        if s.endpoint:
            # An emulator answers anonymously; with a key file the endpoint is a private
            # GCS endpoint and requests are signed as usual.
            return Storage(
                api_root=s.endpoint.rstrip("/"),
                api_is_dev=s.service_account_json is None,
                service_file=s.service_account_json,
            )
        # No key file: application default credentials (GOOGLE_APPLICATION_CREDENTIALS,
        # gcloud's ADC file, then the metadata server / workload identity).
        return Storage(service_file=s.service_account_json)

    async def get(self, key: CacheKey) -> bytes | None:
        storage = await self._client.get()
        name = self.names.name(key)
        try:
            stream = await storage.download_stream(self.bucket, name, timeout=_TIMEOUT_S)
        except ClientResponseError as exc:
            if exc.status == 404:
                return None
            raise
        async with stream as response:  # releases the connection, read or not
            expires = response.headers.get(_EXPIRES_HEADER)
            generation = response.headers.get("x-goog-generation")
            if expires is None:
                # GCS sends custom metadata with the media; a look-alike that does not
                # costs one more request.
                expires = await self._expires(storage, name)
            if is_expired(expires):
                self._cleaner.remove(name, lambda: self._delete_generation(storage, name, generation))
                return None
            data: bytes = await response.read()
            return data

    async def _expires(self, storage: Storage, name: str) -> str | None:
        meta = await storage.download_metadata(self.bucket, name, timeout=_TIMEOUT_S)
        return (meta.get("metadata") or {}).get(EXPIRES_META)

    async def _delete_generation(self, storage: Storage, name: str, generation: str | None) -> None:
        """Delete the expired generation only: a fresh write racing the cleanup survives."""
        params = {"ifGenerationMatch": generation} if generation else None
        try:
            await storage.delete(self.bucket, name, params=params, timeout=_TIMEOUT_S)
        except ClientResponseError as exc:
            if exc.status not in (404, _PRECONDITION_FAILED):
                raise

    async def set(self, key: CacheKey, value: bytes, ttl_s: float | None) -> None:
        storage = await self._client.get()
        expires = expires_at(ttl_s)
        # gcloud-aio turns "custom-time" into the resource field "customTime".
        resource: dict[str, object] = {"metadata": {EXPIRES_META: expires}}
        if expires != NEVER:
            resource["custom-time"] = _rfc3339(float(expires))
        await storage.upload(
            self.bucket,
            self.names.name(key),
            value,
            content_type="application/octet-stream",
            metadata=resource,
            timeout=_TIMEOUT_S,
        )

    async def delete(self, key: CacheKey) -> bool:
        storage = await self._client.get()
        return await self._delete(storage, self.names.name(key))

    async def _delete(self, storage: Storage, name: str) -> bool:
        try:
            await storage.delete(self.bucket, name, timeout=_TIMEOUT_S)
        except ClientResponseError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def clear(self, namespace: str | None) -> int | None:
        """List the prefix page by page; the JSON API has no multi-object delete, so each
        page goes as concurrent single deletes."""
        storage = await self._client.get()
        deleted = 0
        async for names in self._pages(storage, self.names.prefix(namespace)):
            deleted += await delete_each(names, lambda name: self._delete(storage, name))
        return deleted

    async def _pages(self, storage: Storage, prefix: str) -> AsyncIterator[list[str]]:
        params = {"prefix": prefix, "fields": "items(name),nextPageToken"}
        while True:
            page = await storage.list_objects(self.bucket, params=params, timeout=_TIMEOUT_S)
            yield [item["name"] for item in page.get("items", ())]
            token = page.get("nextPageToken")
            if not token:
                return
            params = {**params, "pageToken": token}

    async def ping(self) -> None:
        storage = await self._client.get()
        await storage.get_bucket_metadata(self.bucket, params={"fields": "name"}, timeout=_TIMEOUT_S)

    async def stats(self) -> TierStats:
        return TierStats(None, None)  # counting means listing the whole prefix

    async def close(self) -> None:
        await self._cleaner.close()
        await self._client.close()


async def _close(storage: Storage) -> None:
    await storage.close()


def _rfc3339(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds")
