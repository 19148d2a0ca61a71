"""One tier with what applies to every call on it: a timeout, a circuit breaker, metrics
and fault isolation. A call that raises or times out comes back as FAILED, counted and
logged — never as an exception into a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from app.config import TierBase
from app.metrics import Metrics
from app.tiers.base import Tier
from app.tiers.writes import BATCH, CONCURRENT_BATCH, WriteBuffer

log = logging.getLogger("llmcache.tiers")
T = TypeVar("T")
AnyTier = TypeVar("AnyTier", bound=Tier)
# An admin delete or flush may scan a large store, but must not hang on a dead one.
ADMIN_TIMEOUT_S = 300.0
# A held write has no client waiting on it. On a tier that writes in a thread (disk), its
# timeout (set for the reads a request waits on) cannot stop a write that is slow under
# load: it would only abandon it, while the thread goes on and the retry queues behind it.
BACKGROUND_WRITE_TIMEOUT_S = 30.0
WRITE_OPS = frozenset(("set", "set_many"))


class Failed:
    """Marks a tier call that failed, distinct from a legitimate None result."""

    __slots__ = ()


FAILED: Final = Failed()


@dataclass(slots=True)
class Breaker:
    """Closed until `threshold` failures in a row; then open for `reset_s`; then one probe."""

    threshold: int
    reset_s: float
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False

    def allow(self, now: float) -> bool:
        if self.failures < self.threshold:
            return True
        if now < self.open_until or self.probing:
            return False
        self.probing = True
        return True

    def succeeded(self) -> None:
        self.failures = 0
        self.probing = False

    def failed(self, now: float) -> bool:
        """Record a failure; True if the breaker (re)opens now."""
        self.failures += 1
        self.probing = False
        if self.failures >= self.threshold:
            self.open_until = now + self.reset_s
            return True
        return False

    @property
    def open(self) -> bool:
        return self.failures >= self.threshold


@dataclass(slots=True, frozen=True)
class TierHealth:
    name: str
    type: str
    ok: bool
    latency_ms: float
    error: str | None


async def probe(ping: Callable[[], Awaitable[None]], timeout_s: float) -> tuple[float, str | None]:
    """Run a health check: its latency in ms, and its error (None when it answered)."""
    started = time.perf_counter()
    error: str | None = None
    try:
        async with asyncio.timeout(timeout_s):
            await ping()
    except Exception as exc:
        error = describe(exc)
    return round((time.perf_counter() - started) * 1000, 3), error


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class GuardedTier(Generic[AnyTier]):
    def __init__(self, tier: AnyTier, settings: TierBase, metrics: Metrics) -> None:
        self.tier = tier
        self.settings = settings
        self.metrics = metrics
        self.required = settings.required
        self.breaker = Breaker(settings.breaker_failures, settings.breaker_reset_s)
        # Writes to a remote tier wait here (see writes.py); set when serving starts.
        self.buffer: WriteBuffer | None = None
        # The last write's failure, until a write (or a writing ping) succeeds: readiness
        # must not say ok while every write fails.
        self.write_error: str | None = None

    @property
    def name(self) -> str:
        return self.tier.name

    def open_buffer(self) -> WriteBuffer:
        """The write buffer of a remote tier: batches as large as the tier writes natively
        (a transaction, a pipeline), small ones where a batch is single writes at once."""
        native = type(self.tier).set_many is not Tier.set_many
        self.buffer = WriteBuffer(
            self.settings.write_queue, self.settings.write_buffer_bytes, BATCH if native else CONCURRENT_BATCH
        )
        return self.buffer

    async def call(
        self, op: str, action: Callable[..., Awaitable[T]], *args: Any, guarded: bool = True, background: bool = False
    ) -> T | Failed:
        """`action(*args)`, one tier operation; any failure is logged, counted and
        returned as FAILED.

        `guarded` operations (the request path) get the tier's timeout and breaker; an
        admin delete or flush may take long and must reach a tier the breaker skips.
        """
        tier = self.tier
        # An in-process tier does no I/O: no timeout, no breaker, the hot path stays short.
        remote = guarded and not tier.in_process
        if remote and not self.breaker.allow(time.monotonic()):
            self.metrics.tier(tier.name, op, "skipped", 0.0)
            return FAILED
        started = time.perf_counter()
        limit = self.settings.timeout_s if guarded else ADMIN_TIMEOUT_S
        if background and limit is not None and tier.writes_in_thread:
            limit = max(limit, BACKGROUND_WRITE_TIMEOUT_S)
        try:
            if limit is not None and not tier.in_process:
                async with asyncio.timeout(limit):
                    result = await action(*args)
            else:
                result = await action(*args)
        except asyncio.CancelledError:
            self.breaker.probing = False
            raise
        except Exception as exc:  # a tier's failure must never reach the request
            self._failed(op, exc, remote, started)
            return FAILED
        if op in WRITE_OPS:
            self.write_error = None
        if remote and self.breaker.failures:
            if self.breaker.open:
                self.metrics.breaker(tier.name, False)
                log.info("tier %s: circuit closed, the tier answers again", tier.name)
            self.breaker.succeeded()
        outcome = ("miss" if result is None else "hit") if op == "get" else "ok"
        self.metrics.tier(tier.name, op, outcome, time.perf_counter() - started)
        return result

    def _failed(self, op: str, exc: Exception, remote: bool, started: float) -> None:
        kind = "timeout" if isinstance(exc, TimeoutError) else "error"
        self.metrics.tier(self.tier.name, op, kind, time.perf_counter() - started)
        if op in WRITE_OPS:
            self.write_error = describe(exc)
        if remote and self.breaker.failed(time.monotonic()):
            self.metrics.breaker(self.tier.name, True)
            log.warning("tier %s: circuit open for %ss after %r", self.tier.name, self.breaker.reset_s, exc)
        else:
            log.warning("tier %s %s failed: %r", self.tier.name, op, exc)

    async def health(self) -> TierHealth:
        tier = self.tier
        latency_ms, error = await probe(tier.ping, max(self.settings.timeout_s or 0, 1.0))
        if error is None and tier.ping_writes:
            self.write_error = None  # the ping wrote: writes work again
        if error is None and self.write_error is not None:
            error = f"writes failing: {self.write_error}"
        return TierHealth(tier.name, tier.type, error is None, latency_ms, error)
