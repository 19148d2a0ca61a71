"""Answering a call: from an entry, from a finished flight, or live from a streaming one,
in the caller's mode (a stream is replayed from a stored answer, an answer is sent for a
stream), and counting each answer once.

A hit that a remembered plan finds in the local tier (`app/memo.py`) is answered from a
`Prebuilt`: the response made once per entry and kept with it, so that only `age` is
rendered per hit. Its bytes are those `entry` sends for the same hit.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.asgi import JSON, Receive, Send, end_unfinished, send_error, send_response
from app.calls.base import Call
from app.coalesce import Flight, json_object
from app.codec import NO_USAGE, Entry, Usage
from app.errors import not_cached, upstream_broken
from app.exact_json import dumps
from app.metrics import Metrics
from app.prices import Prices
from app.protocol import write_whole
from app.types import CacheKey, CacheStatus, Headers

if TYPE_CHECKING:
    from app.memo import Plan

if TYPE_CHECKING:
    from app.semantic.cache import Match

SSE = b"text/event-stream; charset=utf-8"
HIT = CacheStatus.HIT.encode()
# What the server refuses in a header value (uvicorn's own check, made when it sends one).
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
# Bytes charged for a Prebuilt beyond its parts: the object and its fields.
PREBUILT_OVERHEAD = 200


@dataclass(slots=True)
class Prebuilt:
    """An entry's answer to a hit, but for `age` (and the server's date and name). The
    head of the last `age` sent is kept: it changes once a second."""

    key: bytes
    content_type: bytes
    head: bytes  # the header lines up to the value of `age`
    tail: bytes  # the header lines after it
    body: bytes | memoryview
    created_at: float
    expires_at: float | None
    tokens: int
    cost: int
    tags: tuple[str, ...]  # the chain checks them on every hit (when there are any)
    age: int = -1
    head_at_age: bytes = b""
    usage: Usage = NO_USAGE
    # What a hit on this entry saved, priced once for the model last asked for.
    priced_for: str | None = None
    usd_saved: float = 0.0

    def head_for(self, age: int) -> bytes:
        if age != self.age:
            self.head_at_age = self.head + str(age).encode() + self.tail
            self.age = age
        return self.head_at_age


def prebuild(key: CacheKey, entry: Entry, body: bytes | memoryview) -> Prebuilt | None:
    """`body`: the entry's body, perhaps a view into its stored bytes (then not charged).
    None for an entry the server would refuse to send as is (a bad content type)."""
    content_type = entry.content_type.encode()
    if _BAD_VALUE.search(content_type):
        return None
    key_bytes = key.encode()
    head = b"x-cache-status: " + HIT + b"\r\nx-cache-key: " + key_bytes + b"\r\nage: "
    tail = b"\r\ncontent-type: " + content_type + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n"
    copied = len(body) if isinstance(body, bytes) else 0
    # head and tail, and the two joined around an age (head_for)
    cost = 2 * (len(head) + len(tail)) + len(key_bytes) + len(content_type) + copied + PREBUILT_OVERHEAD
    return Prebuilt(
        key_bytes,
        content_type,
        head,
        tail,
        body,
        entry.created_at,
        entry.expires_at,
        entry.tokens,
        cost,
        entry.tags,
        usage=entry.usage,
    )


def follows_live(call: Call, flight: Flight) -> bool:
    """Whether a call that joins `flight` is relayed its stream live (it streams, and asks
    for the same events), rather than answered from its finished outcome."""
    return call.stream and flight.stream and call.include_usage == flight.include_usage


class Responder:
    def __init__(self, metrics: Metrics, prices: Prices | None = None) -> None:
        self.metrics = metrics
        self.prices = prices if prices is not None else Prices(defaults=())

    def done(self, call: Call, status: CacheStatus, saved: Usage = NO_USAGE) -> None:
        """Count an answer; `saved`: what the upstream call it did not make would have cost."""
        model = call.model if isinstance(call.model, str) else ""
        usd = 0.0 if saved is NO_USAGE else self.prices.usd(model, saved)
        self.metrics.request(call.call_type, model, status, time.perf_counter() - call.started, saved.total, usd)

    async def entry(
        self,
        call: Call,
        send: Send,
        entry: Entry,
        status: CacheStatus = CacheStatus.HIT,
        match: Match | None = None,
        warning: bytes | None = None,
    ) -> None:
        if match is None:
            headers = call.cache_headers(status)
        else:  # a semantic hit names the entry it served, and how close its question was
            headers = call.cache_headers(status, match.candidate.key)
            headers.append((b"x-cache-similarity", f"{match.candidate.similarity:.4f}".encode()))
        if warning is not None:  # a stale answer says so (app/stale.py)
            headers.append((b"warning", warning))
        headers.append((b"age", str(int(entry.age(time.time()))).encode()))
        if call.stream and call.handler.streams:
            answer = json_object(entry.body, entry.content_type)
            assert answer is not None  # the pipeline's lookup passes only replayable entries to a stream
            headers.append((b"content-type", SSE))
            await send_response(send, 200, headers, b"".join(call.handler.replay(answer, call)))
        else:
            headers.append((b"content-type", entry.content_type.encode()))
            await send_response(send, 200, headers, entry.body)
        self.done(call, status, entry.usage)

    async def prebuilt(self, plan: Plan, hit: Prebuilt, send: Send, started: float, now: float) -> None:
        """A hit, answered as `entry` answers it, from what was built for its entry."""
        age = int(max(0.0, now - hit.created_at))
        policy = plan.policy
        head = hit.head_for(age) if policy is None else policy.line + hit.head_for(age)
        if not write_whole(send, head, hit.body):
            headers = [] if policy is None else [policy.header]
            headers += [
                (b"x-cache-status", HIT),
                (b"x-cache-key", hit.key),
                (b"age", str(age).encode()),
                (b"content-type", hit.content_type),
            ]
            await send_response(send, 200, headers, bytes(hit.body))
        if hit.priced_for != plan.model:  # an entry is asked for under one model (or a few, grouped)
            hit.usd_saved = self.prices.usd(plan.model, hit.usage)
            hit.priced_for = plan.model
        seconds = time.perf_counter() - started
        self.metrics.request(plan.call_type, plan.model, CacheStatus.HIT, seconds, hit.tokens, hit.usd_saved)

    async def not_cached(self, call: Call, send: Send, headers: Headers) -> None:
        # The OpenAI and Anthropic SDKs retry a 504 unless told not to.
        error = not_cached()
        await send_error(send, error, [*headers, (b"x-should-retry", b"false")], call.handler.error_body(error))
        self.done(call, CacheStatus.MISS)

    async def outcome(self, call: Call, flight: Flight, send: Send, status: CacheStatus) -> None:
        """A complete (non-live) answer from a finished flight, in the caller's mode."""
        await flight.wait_finished()
        headers = call.cache_headers(status)
        if flight.error is not None:
            await send_error(send, flight.error, headers, call.handler.error_body(flight.error))
            self.done(call, status)
            return
        outcome = flight.outcome
        assert outcome is not None
        if outcome.cut:
            error = upstream_broken("the upstream stream ended early")
            await send_error(send, error, headers, call.handler.error_body(error))
        elif outcome.sse and outcome.completion is None and not call.stream:
            # A stream that finished without an answer (an error event, say) is no JSON answer.
            error = upstream_broken("the upstream stream finished without an answer")
            await send_error(send, error, headers, call.handler.error_body(error))
        elif not 200 <= outcome.status < 300 or outcome.completion is None:
            await send_response(send, outcome.status, outcome.headers + headers, outcome.body)
        elif call.stream and call.handler.streams:
            headers.append((b"content-type", SSE))
            await send_response(send, 200, headers, b"".join(call.handler.replay(outcome.completion, call)))
        elif outcome.sse:
            headers.append((b"content-type", JSON))
            await send_response(send, 200, headers, dumps(outcome.completion))
        else:
            await send_response(send, outcome.status, outcome.headers + headers, outcome.body)
        answered = not outcome.cut and 200 <= outcome.status < 300 and outcome.completion is not None
        # A follower got the answer of a call it did not make: that call's cost is saved.
        saved = call.handler.usage(outcome.completion) if answered and status is CacheStatus.COALESCED else NO_USAGE
        self.done(call, status, saved)

    async def live(self, call: Call, flight: Flight, receive: Receive, send: Send, status: CacheStatus) -> None:
        """Relay a streamed flight to this client as the chunks arrive."""
        await flight.wait_started()
        if flight.error is not None or (flight.finished and not flight.chunks):
            flight.leave()
            await self.outcome(call, flight, send, status)
            return
        assert flight.status is not None
        task = asyncio.current_task()
        assert task is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            task.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        relayed = False
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": flight.status,
                    "headers": flight.headers + call.cache_headers(status),
                }
            )
            async for chunk in flight.follow():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if flight.cut:
                end_unfinished()  # the client sees the same cut as the upstream made
                return
            await send({"type": "http.response.body", "body": b""})
            relayed = True
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()
        finally:
            watcher.cancel()
            flight.leave()
            self.done(call, status)
        if relayed and status is CacheStatus.COALESCED:
            # What this follower saved is the answer's usage, known once the leader has
            # assembled the stream: counted then, after this client has its whole answer.
            await flight.wait_finished()
            outcome = flight.outcome
            if outcome is not None and outcome.ok and outcome.completion is not None:
                saved = call.handler.usage(outcome.completion)
                model = call.model if isinstance(call.model, str) else ""
                self.metrics.saved(model, status, saved.total, self.prices.usd(model, saved))

    async def follow(self, call: Call, flight: Flight, receive: Receive, send: Send, status: CacheStatus) -> None:
        if follows_live(call, flight):
            await self.live(call, flight, receive, send, status)
            return
        try:
            await self.outcome(call, flight, send, status)
        finally:
            flight.leave()
