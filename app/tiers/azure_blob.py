"""Azure Blob Storage tier, on azure-storage-blob's asyncio client (aiohttp).

One blob per entry (see app/tiers/objects.py). The container must exist: the operator
creates it, with a lifecycle management policy that removes blobs no read comes back for.
"""

from __future__ import annotations

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.identity.aio import DefaultAzureCredential
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import ContainerClient

from app.config import AzureBlobTierSettings
from app.tiers.base import CacheKey, Tier, TierStats
from app.tiers.objects import (
    CONNECT_TIMEOUT_S,
    EXPIRES_META_AZURE,
    READ_TIMEOUT_S,
    Cleaner,
    LazyClient,
    ObjectNames,
    delete_each,
    expires_at,
    is_expired,
)

_OCTET_STREAM = ContentSettings(content_type="application/octet-stream")


class AzureBlobTier(Tier):
    type = "azure_blob"

    def __init__(self, name: str, settings: AzureBlobTierSettings) -> None:
        super().__init__(name)
        self.settings = settings
        self.names = ObjectNames(settings.path)
        self._credential: DefaultAzureCredential | None = None
        self._client: LazyClient[ContainerClient] = LazyClient(self._open, self._shut)
        self._cleaner = Cleaner(name)

    async def _open(self) -> ContainerClient:
        s = self.settings
        # retry_total=0: the chain's timeout and breaker decide what a failure means;
        # the SDK's default retries back off for seconds.
        if s.connection_string:  # it carries its own key or SAS
            return ContainerClient.from_connection_string(
                s.connection_string,
                s.container,
                retry_total=0,
                connection_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
            )
        # Environment, workload identity, managed identity, then developer logins.
        self._credential = DefaultAzureCredential()
        return ContainerClient(
            str(s.account_url),
            s.container,
            credential=self._credential,
            retry_total=0,
            connection_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
        )

    async def _shut(self, container: ContainerClient) -> None:
        await container.close()
        if self._credential is not None:
            await self._credential.close()

    async def get(self, key: CacheKey) -> bytes | None:
        container = await self._client.get()
        name = self.names.name(key)
        try:
            downloader = await container.download_blob(name)
        except ResourceNotFoundError:
            return None
        properties = downloader.properties
        if is_expired(properties.metadata.get(EXPIRES_META_AZURE)):
            etag = properties.etag
            # Only the expired version: a fresh write racing the cleanup survives.
            self._cleaner.remove(
                name, lambda: container.delete_blob(name, etag=etag, match_condition=MatchConditions.IfNotModified)
            )
            return None
        return await downloader.readall()

    async def set(self, key: CacheKey, value: bytes, ttl_s: float | None) -> None:
        container = await self._client.get()
        await container.upload_blob(
            self.names.name(key),
            value,
            overwrite=True,
            metadata={EXPIRES_META_AZURE: expires_at(ttl_s)},
            content_settings=_OCTET_STREAM,
        )

    async def delete(self, key: CacheKey) -> bool:
        container = await self._client.get()
        return await self._delete(container, self.names.name(key))

    async def _delete(self, container: ContainerClient, name: str) -> bool:
        try:
            await container.delete_blob(name)
        except ResourceNotFoundError:
            return False
        return True

    async def clear(self, namespace: str | None) -> int | None:
        """List the prefix; delete each page of names with concurrent single deletes.

        Not blob batches: Azurite rejects the batch body this SDK sends (Azure/Azurite#1809),
        so that path could not be tested, and a batch saves round trips, not operations
        (each sub-request counts as one).
        """
        container = await self._client.get()
        deleted = 0
        pages = container.list_blob_names(name_starts_with=self.names.prefix(namespace)).by_page()
        async for page in pages:
            names = [name async for name in page]
            deleted += await delete_each(names, lambda name: self._delete(container, name))
        return deleted

    async def ping(self) -> None:
        container = await self._client.get()
        await container.get_container_properties()

    async def stats(self) -> TierStats:
        return TierStats(None, None)  # counting means listing the whole prefix

    async def close(self) -> None:
        await self._cleaner.close()
        await self._client.close()
