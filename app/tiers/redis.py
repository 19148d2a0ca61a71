"""Redis and Redis Cluster tier, on redis-py's asyncio client.

Beyond storage, Redis is what makes several processes one cache: a pub/sub channel
carries invalidations (and "entry filled" notices) to every process's in-process tier,
and short `SET NX PX` locks let one process in the fleet call the upstream for a key
while the others wait for the entry to land.

Keys never share a hash tag, so entries spread over every cluster node, and no command
here ever spans two slots: multi-key reads and deletes are split by slot by the client
(`mget_nonatomic`, `delete`), writes go through a pipeline.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from app.config import RedisTierSettings
from app.tiers.base import CacheKey, SharedTier, TierStats
from app.tiers.redis_connection import RedisConnector

log = logging.getLogger("llmcache.tiers.redis")

CHANNEL_SUFFIX = "events"
SCAN_BATCH = 500
# The subscriber waits in get_message(timeout=1); a dead connection shows within this.
LISTEN_TIMEOUT_S = 5.0
# A tag's set outlives every key in it: created with the first key's TTL, made longer
# (or endless) by a later key's. ARGV[1]: the TTL in ms, -1 for none; then the keys.
_TAG = """
local existed = redis.call('exists', KEYS[1])
redis.call('sadd', KEYS[1], unpack(ARGV, 2))
local ttl = tonumber(ARGV[1])
if ttl < 0 then
  redis.call('persist', KEYS[1])
elseif existed == 0 then
  redis.call('pexpire', KEYS[1], ttl)
else
  local left = redis.call('pttl', KEYS[1])
  if left >= 0 and left < ttl then redis.call('pexpire', KEYS[1], ttl) end
end
return 1
"""
# Compare-and-delete: a lock is released only by the holder whose token it carries.
_UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class RedisTier(SharedTier):
    type = "redis"
    indexes_tags = True

    def __init__(self, name: str, settings: RedisTierSettings) -> None:
        super().__init__(name)
        self.settings = settings
        self.prefix = settings.prefix
        self.channel = f"{settings.prefix}{CHANNEL_SUFFIX}"
        self._lock_prefix = f"{settings.prefix}lock:"
        # Neither a key (a namespace has no ':') nor a lock: never taken by either.
        self._tag_prefix = f"{settings.prefix}tag:"
        self.lock_ttl_s = settings.lock_ttl_s
        self.connector = RedisConnector(settings)
        self.client: Redis | RedisCluster = self.connector.client()

    def _name(self, key: CacheKey) -> str:
        return self.prefix + key

    # The client is made without decode_responses: replies are bytes, not the str redis-py
    # types them as for the other setting.
    async def get(self, key: CacheKey) -> bytes | None:
        value: bytes | None = await self.client.get(self._name(key))  # type: ignore[assignment]  # bytes, see above
        return value

    async def get_many(self, keys: list[CacheKey]) -> list[bytes | None]:
        names = [self._name(k) for k in keys]
        if isinstance(self.client, RedisCluster):
            values = await self.client.mget_nonatomic(names)
        else:
            values = await self.client.mget(names)
        return values

    async def set(self, key: CacheKey, value: bytes, ttl_s: float | None) -> None:
        await self.client.set(self._name(key), value, px=ttl_ms(ttl_s))

    async def set_many(self, items: list[tuple[CacheKey, bytes]], ttl_s: float | None) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for key, value in items:
                pipe.set(self._name(key), value, px=ttl_ms(ttl_s))
            await pipe.execute()

    async def delete(self, key: CacheKey) -> bool:
        return bool(await self.client.delete(self._name(key)))

    async def clear(self, namespace: str | None) -> int | None:
        """SCAN (never KEYS) over every primary, deleting in batches split by slot."""
        pattern = f"{self.prefix}{namespace}/*" if namespace else f"{self.prefix}*"
        # In-flight locks belong to running calls, not to the cache.
        keep = None if namespace else self._lock_prefix.encode()
        return await delete_matching(self.client, pattern, keep)

    async def ping(self) -> None:
        if isinstance(self.client, RedisCluster):
            await self.client.ping(target_nodes=RedisCluster.ALL_NODES)
        else:
            await self.client.ping()

    async def stats(self) -> TierStats:
        return TierStats(None, None)  # the keyspace may be shared; counting ours means a full SCAN

    async def close(self) -> None:
        await self.client.aclose()
        await self.connector.close()

    # --- tags: a set of keys per tag -------------------------------------------------------

    async def tag(self, tagged: dict[str, list[CacheKey]], ttl_s: float | None) -> None:
        ttl = -1 if ttl_s is None else max(1, int(ttl_s * 1000))
        for tag, keys in tagged.items():  # a write carries a few tags; each set may live on its own node
            await self.client.eval(_TAG, 1, self._tag_prefix + tag, ttl, *keys)

    async def take_tagged(self, tags: list[str]) -> list[CacheKey]:
        keys: set[CacheKey] = set()
        for tag in tags:
            name = self._tag_prefix + tag
            members = await self.client.smembers(name)
            await self.client.delete(name)
            keys.update(m.decode() if isinstance(m, bytes) else m for m in members)
        return sorted(keys)

    # --- fleet coordination ---------------------------------------------------------------

    async def try_lock(self, key: CacheKey) -> str | None:
        token = secrets.token_hex(8)
        acquired = await self.client.set(self._lock_prefix + key, token, nx=True, px=ttl_ms(self.lock_ttl_s))
        return token if acquired else None

    async def unlock(self, key: CacheKey, token: str) -> None:
        await self.client.eval(_UNLOCK, 1, self._lock_prefix + key, token)

    async def locked(self, key: CacheKey) -> bool:
        return bool(await self.client.exists(self._lock_prefix + key))

    async def publish(self, message: bytes) -> None:
        await self.client.publish(self.channel, message)

    async def listen(self) -> AsyncIterator[bytes]:
        """Messages of the channel, until the connection fails (the caller reconnects)."""
        conn = self.connector.subscriber(LISTEN_TIMEOUT_S)
        pubsub = conn.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    yield message["data"]
        finally:
            await pubsub.aclose()
            await conn.aclose()


async def delete_matching(client: Redis | RedisCluster, pattern: str, keep: bytes | None = None) -> int:
    """Delete every key matching `pattern` (but those starting with `keep`): SCAN, never
    KEYS, over every primary of a cluster, deleting in batches the client splits by slot."""
    deleted = 0
    batch: list[bytes] = []
    async for name in client.scan_iter(match=pattern, count=SCAN_BATCH):
        if keep is not None and name.startswith(keep):
            continue
        batch.append(name)
        if len(batch) >= SCAN_BATCH:
            deleted += await client.delete(*batch)
            batch.clear()
    if batch:
        deleted += await client.delete(*batch)
    return deleted


def ttl_ms(ttl_s: float | None) -> int | None:
    """A TTL in Redis milliseconds, at least 1 (Redis refuses an expiry of 0)."""
    return None if ttl_s is None else max(1, int(ttl_s * 1000))
