"""Amazon S3 (and S3-compatible stores: MinIO, R2, ...) tier, on aiobotocore.

One object per entry (see app/tiers/objects.py). The bucket must exist: the operator
creates it, with a lifecycle rule that removes objects no read comes back for.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import ClientError

from app.config import S3TierSettings
from app.tiers.base import CacheKey, Tier, TierStats
from app.tiers.objects import (
    CONNECT_TIMEOUT_S,
    EXPIRES_META,
    READ_TIMEOUT_S,
    Cleaner,
    LazyClient,
    ObjectNames,
    expires_at,
    is_expired,
)

log = logging.getLogger("llmcache.tiers")
DELETE_BATCH = 1000  # the most keys one DeleteObjects call takes
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


class S3Tier(Tier):
    type = "s3"

    def __init__(self, name: str, settings: S3TierSettings) -> None:
        super().__init__(name)
        self.settings = settings
        self.bucket = settings.bucket
        self.names = ObjectNames(settings.path)
        self._stack = AsyncExitStack()
        self._client: LazyClient[Any] = LazyClient(self._open, self._shut)
        self._cleaner = Cleaner(name)

    def _config(self) -> AioConfig:
        return AioConfig(
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            # One attempt: the chain's timeout and breaker decide what a failure means,
            # and a retry would only hold the request longer.
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=64,
            # A custom endpoint is MinIO, R2 or an emulator: path-style URLs work on all
            # of them, virtual-host URLs need wildcard DNS.
            s3={"addressing_style": "path"} if self.settings.endpoint_url else None,
            # The flexible checksums botocore sends by default are not understood by
            # every S3-compatible store; checksums stay where the API requires them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )

    async def _open(self) -> Any:
        s = self.settings
        session = get_session()
        # botocore parses its JSON models synchronously, ~0.1 s for S3: done in the loop,
        # the first cache read would stall every request in flight. The warm-up reads
        # botocore's loader, an internal: if that has changed, the client still works
        # and loads its models itself, on the loop, once.
        try:
            await asyncio.to_thread(_load_models, session)
        except Exception as exc:
            log.warning("tier %s: botocore model warm-up failed (%r); continuing without it", self.name, exc)
        # No keys configured: botocore's own chain (env, profile, SSO, instance or
        # workload identity) finds credentials.
        context = session.create_client(
            "s3",
            region_name=s.region,
            endpoint_url=s.endpoint_url,
            aws_access_key_id=s.access_key_id,
            aws_secret_access_key=s.secret_access_key,
            config=self._config(),
        )
        return await self._stack.enter_async_context(context)

    async def _shut(self, client: Any) -> None:
        await self._stack.aclose()

    async def get(self, key: CacheKey) -> bytes | None:
        s3 = await self._client.get()
        name = self.names.name(key)
        try:
            response = await s3.get_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise
        async with response["Body"] as body:
            if is_expired(response.get("Metadata", {}).get(EXPIRES_META)):
                # S3's ETag is a content hash, not a write version, and If-Match deletes
                # are not on every S3-compatible store: the delete is unconditional. A
                # racing fresh write lost this way costs one upstream call.
                self._cleaner.remove(name, lambda: s3.delete_object(Bucket=self.bucket, Key=name))
                return None
            data: bytes = await body.read()
            return data

    async def set(self, key: CacheKey, value: bytes, ttl_s: float | None) -> None:
        s3 = await self._client.get()
        await s3.put_object(
            Bucket=self.bucket,
            Key=self.names.name(key),
            Body=value,
            Metadata={EXPIRES_META: expires_at(ttl_s)},
            ContentType="application/octet-stream",
        )

    async def delete(self, key: CacheKey) -> bool:
        """DeleteObject succeeds whether or not the key exists, so HEAD tells which."""
        s3 = await self._client.get()
        name = self.names.name(key)
        try:
            await s3.head_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _not_found(exc):
                return False
            raise
        await s3.delete_object(Bucket=self.bucket, Key=name)
        return True

    async def clear(self, namespace: str | None) -> int | None:
        """List the prefix page by page, one DeleteObjects call per page of up to 1000 keys."""
        s3 = await self._client.get()
        deleted = 0
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.names.prefix(namespace), PaginationConfig={"PageSize": DELETE_BATCH}
        )
        async for page in pages:
            names = [item["Key"] for item in page.get("Contents", ())]
            if names:  # an empty Delete list is a malformed request
                deleted += await self._delete_batch(s3, names)
        return deleted

    async def _delete_batch(self, s3: Any, names: list[str]) -> int:
        response = await s3.delete_objects(
            Bucket=self.bucket, Delete={"Objects": [{"Key": n} for n in names], "Quiet": True}
        )
        errors = response.get("Errors", ())
        if errors:
            first = errors[0]
            raise RuntimeError(
                f"S3 refused to delete {len(errors)} of {len(names)} objects, e.g. "
                f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
            )
        return len(names)

    async def ping(self) -> None:
        s3 = await self._client.get()
        await s3.head_bucket(Bucket=self.bucket)

    async def stats(self) -> TierStats:
        return TierStats(None, None)  # counting means listing the whole prefix

    async def close(self) -> None:
        await self._cleaner.close()
        await self._client.close()


def _load_models(session: AioSession) -> None:
    """Fill the session loader's cache with what creating an S3 client reads."""
    loader = session.get_component("data_loader")
    for kind in ("service-2", "endpoint-rule-set-1", "paginators-1"):
        loader.load_service_model("s3", kind)
    for name in ("endpoints", "partitions", "_retry", "sdk-default-configuration"):
        loader.load_data(name)


def _not_found(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND
