"""Single-flight: one upstream call per key in flight, any number of waiting clients.

A flight records what the upstream sent — status, headers and the body chunks as they
arrive — so a follower that joins a live stream first gets every chunk already sent and
then the rest as it comes, and one that joins at the end gets the finished result.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.codec import Entry
from app.errors import ProxyError
from app.types import CacheKey, Headers


@dataclass(slots=True)
class Outcome:
    """How the upstream call ended. `complete`: the body is a whole answer of its call
    type, the only kind that is stored; `completion` is that answer as a JSON object (None
    for a plain-text answer); `sse` says the body is the raw event stream."""

    status: int
    headers: Headers
    body: bytes
    completion: dict[str, Any] | None = None
    cut: bool = False
    sse: bool = False
    content_type: str = "application/json"
    complete: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and not self.cut

    @classmethod
    def of_entry(cls, entry: Entry) -> Outcome:
        headers = [(b"content-type", entry.content_type.encode())]
        completion = json_object(entry.body, entry.content_type)
        return cls(200, headers, entry.body, completion, content_type=entry.content_type, complete=True)


def json_object(body: bytes, content_type: str) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one (not JSON, or not an object)."""
    if "json" not in content_type:
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


@dataclass(slots=True, eq=False)
class Flight:
    key: CacheKey
    stream: bool
    include_usage: bool
    status: int | None = None
    headers: Headers = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    outcome: Outcome | None = None
    error: ProxyError | None = None
    consumers: int = 1
    producer: asyncio.Task[Any] | None = None
    cut: bool = False
    _ended: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def started(self, status: int, headers: Headers) -> None:
        self.status, self.headers = status, headers
        self._wake()

    def push(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self._wake()

    def end(self, cut: bool = False) -> None:
        """No more chunks will come; live followers can finish their responses."""
        self._ended = True
        self.cut = self.cut or cut
        self._wake()

    def finish(self, outcome: Outcome | None = None, error: ProxyError | None = None) -> None:
        self.outcome, self.error = outcome, error
        if outcome is not None and outcome.cut:
            self.cut = True
        self._ended = True
        self._finished.set()
        self._wake()

    def _wake(self) -> None:
        # One event per change: waiters that were parked are released, new ones park anew.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_started(self) -> None:
        while self.status is None and not self.finished:
            await self._changed.wait()

    async def wait_finished(self) -> None:
        await self._finished.wait()

    async def follow(self) -> AsyncIterator[bytes]:
        """Every chunk from the first, live, until the flight finishes."""
        sent = 0
        while True:
            pending = len(self.chunks) - sent
            if pending:
                # Chunks that piled up while this client was busy go out in one write.
                yield self.chunks[sent] if pending == 1 else b"".join(self.chunks[sent:])
                sent += pending
                continue
            if self._ended:
                return
            await self._changed.wait()

    def leave(self) -> None:
        """A consumer went away; the last one out stops the upstream call."""
        self.consumers -= 1
        if self.consumers <= 0 and not self._ended and self.producer is not None:
            self.producer.cancel()


class Flights:
    def __init__(self) -> None:
        self._active: dict[CacheKey, Flight] = {}

    def join(self, key: CacheKey) -> Flight | None:
        flight = self._active.get(key)
        if flight is not None:
            flight.consumers += 1
        return flight

    def lead(self, key: CacheKey, stream: bool, include_usage: bool) -> Flight:
        flight = Flight(key, stream, include_usage)
        self._active[key] = flight
        return flight

    def land(self, flight: Flight) -> None:
        if self._active.get(flight.key) is flight:
            del self._active[flight.key]
