"""What makes several processes one cache, through the shared tier (Redis): a channel that
keeps every process's in-process tiers coherent after a delete or flush, and short locks
that let one process of the fleet call the upstream for a key while the others wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from app.tiers.base import SharedTier, Tier
from app.tiers.guarded import Failed, GuardedTier
from app.tiers.tagging import tags_message
from app.types import CacheKey

log = logging.getLogger("llmcache.tiers")
T = TypeVar("T")
RECONNECT_S = 0.5
POLL_S = 0.05


@dataclass(slots=True, frozen=True)
class FleetLock:
    key: CacheKey
    token: str


class Fleet:
    def __init__(self, shared: GuardedTier[SharedTier] | None, local: list[Tier]) -> None:
        self.shared = shared
        self.local = local  # in-process tiers: what a message from another process updates
        self._filled: dict[CacheKey, asyncio.Event] = {}
        self._listener: asyncio.Task[None] | None = None
        # Set by the chain: a tag invalidation from another process, and a channel lost
        # (announcements may have been missed meanwhile).
        self.on_tags: Callable[[tuple[str, ...], float], None] | None = None
        self.on_lost: Callable[[], None] | None = None

    async def announce(self, message: dict[str, Any]) -> None:
        shared = self.shared
        if shared is not None:
            data = orjson.dumps(message)
            await shared.call("publish", shared.tier.publish, data)

    async def acquire(self, key: CacheKey) -> FleetLock | bool:
        """A lock if this process should call the upstream, False if another process is
        already calling it, True if no fleet lock is possible (no shared tier, or down)."""
        shared = self.shared
        if shared is None:
            return True
        token = await shared.call("lock", shared.tier.try_lock, key)
        if isinstance(token, Failed):
            return True
        return False if token is None else FleetLock(key, token)

    async def release(self, lock: FleetLock) -> None:
        shared = self.shared
        if shared is None:
            return
        await shared.call("unlock", shared.tier.unlock, lock.key, lock.token)
        await self.announce({"op": "filled", "key": lock.key})

    async def wait(self, key: CacheKey, look: Callable[[], Awaitable[T | None]]) -> T | None:
        """While another process holds the key's lock: what `look` finds once it has
        landed (None if nothing did, or the lock outlived its TTL)."""
        shared = self.shared
        assert shared is not None
        event = self._filled.setdefault(key, asyncio.Event())
        end = time.monotonic() + shared.tier.lock_ttl_s
        try:
            while time.monotonic() < end:
                found = await look()
                if found is not None:
                    return found
                held = await shared.call("locked", shared.tier.locked, key)
                if held is not True:
                    return await look()  # released (or Redis is gone): last look
                try:
                    async with asyncio.timeout(POLL_S):
                        await event.wait()
                except TimeoutError:
                    pass
            return None
        finally:
            if self._filled.get(key) is event:
                del self._filled[key]

    async def _apply(self, data: bytes) -> None:
        """A message from another process: keep this process's in-process tiers coherent."""
        # Checked whole before acting: a message that raised here would drop the channel,
        # and with it every invalidation sent until it is listened to again.
        try:
            message = orjson.loads(data)
            op = message["op"]
            key, namespace = message.get("key"), message.get("namespace")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            op = key = namespace = None
        if op == "filled" and isinstance(key, str):
            event = self._filled.get(key)
            if event is not None:
                event.set()
        elif op == "delete" and isinstance(key, str):
            for tier in self.local:
                await tier.delete(key)
        elif op == "clear" and (namespace is None or isinstance(namespace, str)):
            for tier in self.local:
                await tier.clear(namespace)
        elif op == "tags" and (tagged := tags_message(message)) is not None:
            if self.on_tags is not None:
                self.on_tags(*tagged)
        else:
            log.warning("ignoring a malformed fleet message: %r", data[:200])

    async def _listen(self, tier: SharedTier) -> None:
        while True:
            try:
                async for data in tier.listen():
                    await self._apply(data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("fleet channel on %s lost (%r); reconnecting", tier.name, exc)
            # In-process tiers may have missed invalidations while the channel was down.
            await asyncio.sleep(RECONNECT_S)
            if self.on_lost is not None:
                self.on_lost()

    def start(self) -> None:
        if self.shared is not None and self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen(self.shared.tier))

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
