"""The request path of the cached routes, top to bottom:

    read → control → key → lookup → (coalesce) → upstream → respond → store

Raw ASGI on purpose: this is the hot path, and a framework's request objects, routing
and middleware cost more than the whole cache lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from app import keys
from app.answers import complete
from app.asgi import (
    JSON, ClientGone, Receive, Scope, Send, end_unfinished, offload, read_body, send_error, send_response,
)
from app.codec import Entry, new_entry
from app.coalesce import Flight, Flights, Outcome, json_object
from app.config import Settings
from app.control import CacheControl, parse_control
from app.errors import ProxyError, bad_request, internal_error, not_cached, upstream_broken
from app.exact_json import dumps, parse_object
from app.metrics import Metrics
from app.routing import Routing
from app.streaming import assemble, parse_events, replay
from app.tiers.chain import Chain, FleetLock
from app.types import CacheKey, Headers
from app.upstream import Upstream, request_headers, response_headers, upstream_url

if TYPE_CHECKING:
    from app.semantic.cache import Asked, Match, SemanticCache

log = logging.getLogger("llmcache.proxy")

SSE = b"text/event-stream; charset=utf-8"
_MISSING: Any = object()


@dataclass(slots=True)
class Incoming:
    """What the path needs from the request head, gathered in one pass."""

    raw: Headers
    controls: dict[str, str]
    query: str = ""
    credentials: list[tuple[bytes, bytes]] = field(default_factory=list)
    authorization: str | None = None
    content_type: bytes | None = None
    content_length: int | None = None
    cache_control: str | None = None


@dataclass(slots=True)
class Call:
    """One cacheable request on its way through the path."""

    call_type: str
    model: Any
    control: CacheControl
    started: float
    incoming: Incoming
    path: str
    key: CacheKey | None = None
    body: bytes = b""
    # Set when the body sent upstream is a rebuilt form with a new boundary.
    body_type: bytes | None = None
    stream: bool = False
    include_usage: bool = False
    asked: Asked | None = None  # the semantic side, when the semantic cache applies

    def cache_headers(self, status: str, key: CacheKey | None = None) -> Headers:
        out: Headers = [(b"x-cache-status", status.encode())]
        key = key or self.key
        if key is not None:
            out.append((b"x-cache-key", key.encode()))
        return out


_CREDENTIALS = frozenset(keys.CREDENTIAL_HEADERS)


def read_headers(scope: Scope) -> Incoming:
    raw: Headers = scope["headers"]
    incoming = Incoming(raw, {}, scope.get("query_string", b"").decode("latin-1"))
    for name, value in raw:
        if name.startswith(b"x-cache-"):
            incoming.controls[name[8:].decode("latin-1")] = value.decode("latin-1")
        elif name in _CREDENTIALS:
            if name in keys.SINGLE_HEADERS and any(n == name for n, _ in incoming.credentials):
                raise bad_request(f"the {name.decode()} header was sent more than once", "duplicate_credential_header")
            incoming.credentials.append((name, value))
            if name == b"authorization":
                incoming.authorization = value.decode("latin-1")
        elif name == b"content-type":
            incoming.content_type = value
        elif name == b"content-length":
            try:
                incoming.content_length = int(value)
            except ValueError:
                raise bad_request("invalid content-length header") from None
        elif name == b"cache-control":
            incoming.cache_control = value.decode("latin-1")
    return incoming


class Proxy:
    def __init__(
        self,
        settings: Settings,
        chain: Chain,
        upstream: Upstream,
        metrics: Metrics,
        semantic: SemanticCache | None = None,
    ) -> None:
        self.settings = settings
        self.cache = settings.cache
        self.chain = chain
        self.upstream = upstream
        self.metrics = metrics
        self.semantic = semantic
        self.routing = Routing(settings)
        self.flights = Flights()
        self.max_body = settings.server.max_body_bytes
        self.max_form_parts = settings.server.max_form_parts
        self.enabled = frozenset(settings.cache.call_types)

    # --- entry --------------------------------------------------------------------------

    async def handle(self, call_type: str, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            incoming = read_headers(scope)
            body = await read_body(receive, self.max_body, incoming.content_length)
            if call_type == "transcriptions":
                from app.transcriptions import handle_transcription

                await handle_transcription(self, call_type, scope, incoming, body, receive, send)
            elif call_type == "embeddings":
                from app.embeddings import handle_embeddings

                await handle_embeddings(self, call_type, scope, incoming, body, send)
            else:
                await self._completion(call_type, scope, incoming, body, receive, send)
        except ProxyError as error:
            await send_error(send, error)
        except ClientGone:
            return
        except Exception:
            # A bug, not a client's or an upstream's fault: logged in full, and the client
            # still gets an answer in the API's error shape (if its response has not begun).
            log.exception("unexpected error on %r", scope["path"])
            try:
                await send_error(send, internal_error())
            except Exception:  # the response had begun: uvicorn closes the connection
                pass

    # --- shared steps -------------------------------------------------------------------

    def begin(self, call_type: str, scope: Scope, incoming: Incoming, model: Any, body_control: Any) -> Call:
        control = parse_control(incoming.controls, incoming.cache_control, body_control)
        return Call(call_type, model, control, time.perf_counter(), incoming, scope["path"])

    def cacheable(self, call: Call) -> bool:
        use = call.control.use_cache
        if call.call_type not in self.enabled or use is False:
            return False
        return use is True or self.cache.mode == "default_on"

    def scope_of(self, call: Call) -> str | None:
        return None if self.cache.share_across_keys else keys.credential_scope(call.incoming.credentials)

    def namespace_of(self, call: Call) -> str | None:
        return call.control.namespace or self.cache.namespace

    def key_for(self, call: Call, params: dict[str, Any]) -> CacheKey:
        return keys.cache_key(
            call.call_type, self.routing.group_of(call.model), params, self.scope_of(call), self.namespace_of(call), call.incoming.query
        )

    def ttl(self, call: Call) -> float | None:
        return call.control.ttl_s if call.control.ttl_s is not None else self.cache.ttl_s

    def outbound(self, call: Call) -> tuple[str, Headers]:
        """Where and with which headers the call goes upstream (built only on a miss)."""
        route = self.routing.route(call.model)
        url = upstream_url(route.base_url, call.path, call.incoming.query)
        headers = request_headers(call.incoming.raw, route.api_key, drop_controls=True, content_type=call.body_type)
        return url, headers

    def upstream_model(self, model: Any) -> str | None:
        return self.routing.route(model).upstream_model

    def done(self, call: Call, status: str, tokens_saved: int = 0) -> None:
        model = call.model if isinstance(call.model, str) else ""
        self.metrics.request(call.call_type, model, status, time.perf_counter() - call.started, tokens_saved)

    async def lookup(self, call: Call) -> Entry | None:
        if call.key is None or call.control.no_cache:
            return None
        entry = await self.chain.get(call.key, call.control.max_age_s)
        if entry is not None and call.stream and json_object(entry.body, entry.content_type) is None:
            return None  # not a completion a stream can be replayed from: answer it anew
        return entry

    async def store(self, call: Call, body: bytes, content_type: str, tokens: int, durable: bool = False) -> None:
        if call.key is not None and self.storable(call):
            await self.chain.set(call.key, new_entry(body, content_type, self.ttl(call), tokens), durable)

    def storable(self, call: Call) -> bool:
        return not call.control.no_store and self.ttl(call) != 0

    async def send_entry(
        self, call: Call, send: Send, entry: Entry, status: str = "hit", match: Match | None = None
    ) -> None:
        if match is None:
            headers = call.cache_headers(status)
        else:  # a semantic hit names the entry it served, and how close its question was
            headers = call.cache_headers(status, match.candidate.key)
            headers.append((b"x-cache-similarity", f"{match.candidate.similarity:.4f}".encode()))
        headers.append((b"age", str(int(entry.age(time.time()))).encode()))
        if call.stream:
            completion = json_object(entry.body, entry.content_type)
            assert completion is not None  # lookup() passes only replayable entries to a stream
            headers.append((b"content-type", SSE))
            await send_response(send, 200, headers, b"".join(replay(completion, call.include_usage)))
        else:
            headers.append((b"content-type", entry.content_type.encode()))
            await send_response(send, 200, headers, entry.body)
        self.done(call, status, entry.tokens)

    # --- chat and text completions ------------------------------------------------------

    async def open_json(
        self, call_type: str, scope: Scope, incoming: Incoming, body: bytes
    ) -> tuple[Call, dict[str, Any]]:
        """The call and its payload (without `cache`); the upstream body is the original
        bytes unless the payload had to change."""
        payload = await offload(len(body), parse_object, body)
        stream = payload.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise bad_request(f"'stream' must be a boolean, not {type(stream).__name__}", "invalid_request")
        body_control = payload.pop("cache", _MISSING)
        call = self.begin(call_type, scope, incoming, payload.get("model"), None if body_control is _MISSING else body_control)
        changed = body_control is not _MISSING or self.upstream_model(call.model) is not None
        call.body = self.upstream_json(call, payload) if changed else body
        return call, payload

    def upstream_json(self, call: Call, payload: dict[str, Any]) -> bytes:
        rename = self.upstream_model(call.model)
        return dumps(payload if rename is None else {**payload, "model": rename})

    async def _completion(
        self, call_type: str, scope: Scope, incoming: Incoming, body: bytes, receive: Receive, send: Send
    ) -> None:
        call, payload = await self.open_json(call_type, scope, incoming, body)
        call.stream = payload.get("stream") is True
        options = payload.get("stream_options")
        call.include_usage = call.stream and isinstance(options, dict) and options.get("include_usage") is True
        if not self.cacheable(call):
            await self.forward(call, receive, send, "bypass", flight=None)
            return
        call.key = await offload(len(body), self.key_for, call, payload)
        if self.semantic is not None:
            call.asked = self.semantic.ask(
                call_type, self.routing.group_of(call.model), payload, self.scope_of(call), self.namespace_of(call), incoming.query
            )
        await self.serve_cacheable(call, receive, send)

    async def serve_cacheable(self, call: Call, receive: Receive, send: Send) -> None:
        """Lookup, then join an identical call in flight, or lead a new one."""
        entry = await self.lookup(call)
        if entry is not None:
            await self.send_entry(call, send, entry)
            return
        if call.control.only_if_cached:
            # The OpenAI and Anthropic SDKs retry a 504 unless told not to.
            await send_error(send, not_cached(), [*call.cache_headers("miss"), (b"x-should-retry", b"false")])
            self.done(call, "miss")
            return
        status = "refresh" if call.control.no_cache else "miss"
        assert call.key is not None
        flight = self.flights.join(call.key)
        if flight is not None:
            self.metrics.coalesced.inc()
            await self.follow(call, flight, receive, send, status)
            return
        flight = self.flights.lead(call.key, call.stream, call.include_usage)
        if call.asked is not None and self.semantic is not None and not call.control.no_cache:
            match = await self.semantic.lookup(
                call.asked, call.incoming.authorization, call.control.similarity_threshold, call.control.max_age_s
            )
            if match is not None:
                await self.settle(call, flight, send, match.entry, "semantic-hit", match)
                return
        lock = await self.chain.acquire(call.key)
        if lock is False:
            # Another process of the fleet is calling the upstream for this key.
            entry = await self.chain.wait_for_entry(call.key)
            if entry is not None:
                self.metrics.coalesced.inc()
                await self.settle(call, flight, send, entry)
                return
        await self.forward(call, receive, send, status, flight, lock if isinstance(lock, FleetLock) else None)

    async def settle(
        self, call: Call, flight: Flight, send: Send, entry: Entry, status: str = "hit", match: Match | None = None
    ) -> None:
        """A led flight answered without the upstream: its followers get `entry` too."""
        flight.finish(Outcome.of_entry(entry))
        self.flights.land(flight)
        await self.send_entry(call, send, entry, status, match)

    # --- upstream, leader side ----------------------------------------------------------

    async def forward(
        self,
        call: Call,
        receive: Receive,
        send: Send,
        status: str,
        flight: Flight | None,
        lock: FleetLock | None = None,
    ) -> None:
        """Call the upstream for `call`; `flight` (if any) lets followers share the result.

        The call runs in a task of its own: a client that leaves does not stop it while
        others wait on it, and storing happens after this client has its answer.
        """
        if flight is None:
            flight = Flight(call.key or "", call.stream, call.include_usage)
        flight.producer = self.chain.spawn(self._fly(call, flight, lock))
        if call.stream:
            await self.consume_live(call, flight, receive, send, status)
        else:
            await self.send_outcome(call, flight, send, status)

    async def _fly(self, call: Call, flight: Flight, lock: FleetLock | None) -> None:
        """Run the upstream call of a flight, publish its outcome, store it, land it.

        The flight lands only after the entry is written, so an identical request that
        arrives in between joins the flight instead of calling the upstream again; with a
        fleet lock the shared tier is written before the lock is released, so the other
        processes find the entry when they are told.
        """
        started = time.perf_counter()
        try:
            if call.stream:
                outcome = await self._produce_stream(call, flight)
            else:
                outcome = await self._produce_body(call)
        except ProxyError as error:
            self.metrics.upstream_error(call.call_type, error.code)
            flight.finish(error=error)
        except asyncio.CancelledError:
            # Every client left: the upstream response was closed on the way out.
            flight.finish(Outcome(flight.status or 499, flight.headers, b"", cut=True))
            raise
        except Exception:
            # Whatever went wrong, the clients waiting on this flight must get an answer.
            log.exception("upstream call for %s failed unexpectedly", call.key)
            flight.end(cut=True)
            flight.finish(error=internal_error())
        else:
            if not outcome.ok:
                self.metrics.upstream_error(call.call_type, "stream_cut" if outcome.cut else str(outcome.status))
            elif not outcome.complete:
                self.metrics.upstream_error(call.call_type, "incomplete")
            elif isinstance(call.model, str):
                self.metrics.saw_model(call.model)
            flight.finish(outcome)
            if outcome.ok and outcome.complete:
                body = orjson.dumps(outcome.completion) if outcome.sse else outcome.body
                tokens = _total_tokens(outcome.completion) if outcome.completion else 0
                await self.store(call, body, outcome.content_type, tokens, durable=lock is not None)
                if call.asked is not None and self.semantic is not None and call.key and self.storable(call):
                    self.chain.spawn(self.semantic.remember(call.asked, call.key, self.ttl(call)))
        finally:
            self.metrics.upstream(call.call_type, time.perf_counter() - started)
            self.flights.land(flight)
            if lock is not None:
                await self.chain.release(lock)

    async def _produce_body(self, call: Call) -> Outcome:
        url, headers = self.outbound(call)
        response = await self.upstream.call("POST", url, headers, call.body)
        return _outcome(call.call_type, response, response.content)

    async def _produce_stream(self, call: Call, flight: Flight) -> Outcome:
        url, outbound_headers = self.outbound(call)
        async with self.upstream.open("POST", url, outbound_headers, call.body) as response:
            headers = response_headers(response)
            if not response.is_success or not response.headers.get("content-type", "").startswith(
                "text/event-stream"
            ):
                return _outcome(call.call_type, response, await response.aread())
            flight.started(response.status_code, headers)
            try:
                async for chunk in response.aiter_bytes():
                    flight.push(chunk)
            except httpx.HTTPError as exc:
                log.info("upstream stream cut for %s: %r", call.key, exc)
                flight.end(cut=True)
                return Outcome(response.status_code, headers, b"", cut=True, sse=True)
        # Live clients finish now; assembly happens after their responses have ended.
        flight.end()
        raw = b"".join(flight.chunks)
        events, finished = parse_events(raw)
        try:
            completion = assemble(events, finished)
        except (TypeError, AttributeError, KeyError, ValueError, IndexError):
            completion = None  # events of the wrong shape: relayed as they came, not stored
        if completion is not None and not complete(call.call_type, "application/json", completion):
            completion = None
        # Not cut: the upstream ended its response. Whether it is an answer to keep is
        # `complete`; a live client was relayed it as it came, either way.
        return Outcome(response.status_code, headers, raw, completion, sse=True, complete=completion is not None)

    # --- responding ---------------------------------------------------------------------

    async def send_outcome(self, call: Call, flight: Flight, send: Send, status: str) -> None:
        """A complete (non-live) answer from a finished flight, in the caller's mode."""
        await flight.wait_finished()
        headers = call.cache_headers(status)
        if flight.error is not None:
            await send_error(send, flight.error, headers)
            self.done(call, status)
            return
        outcome = flight.outcome
        assert outcome is not None
        if outcome.cut:
            await send_error(send, upstream_broken("the upstream stream ended early"), headers)
        elif outcome.sse and outcome.completion is None and not call.stream:
            # A stream that finished without an answer (an error event, say) is no JSON answer.
            await send_error(send, upstream_broken("the upstream stream finished without an answer"), headers)
        elif not 200 <= outcome.status < 300 or outcome.completion is None:
            await send_response(send, outcome.status, outcome.headers + headers, outcome.body)
        elif call.stream:
            headers.append((b"content-type", SSE))
            await send_response(send, 200, headers, b"".join(replay(outcome.completion, call.include_usage)))
        elif outcome.sse:
            headers.append((b"content-type", JSON))
            await send_response(send, 200, headers, orjson.dumps(outcome.completion))
        else:
            await send_response(send, outcome.status, outcome.headers + headers, outcome.body)
        self.done(call, status)

    async def consume_live(self, call: Call, flight: Flight, receive: Receive, send: Send, status: str) -> None:
        """Relay a streamed flight to this client as the chunks arrive."""
        await flight.wait_started()
        if flight.error is not None or flight.finished and not flight.chunks:
            flight.leave()
            await self.send_outcome(call, flight, send, status)
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
        try:
            await send({
                "type": "http.response.start",
                "status": flight.status,
                "headers": flight.headers + call.cache_headers(status),
            })
            async for chunk in flight.follow():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if flight.cut:
                end_unfinished()  # the client sees the same cut as the upstream made
                return
            await send({"type": "http.response.body", "body": b""})
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()
        finally:
            watcher.cancel()
            flight.leave()
            self.done(call, status)

    # --- upstream, follower side --------------------------------------------------------

    async def follow(self, call: Call, flight: Flight, receive: Receive, send: Send, status: str) -> None:
        live = call.stream and flight.stream and call.include_usage == flight.include_usage
        if live:
            await self.consume_live(call, flight, receive, send, status)
            return
        try:
            await self.send_outcome(call, flight, send, status)
        finally:
            flight.leave()


def _outcome(call_type: str, response: httpx.Response, body: bytes) -> Outcome:
    headers = response_headers(response)
    content_type = response.headers.get("content-type", "application/octet-stream")
    if not response.is_success:
        return Outcome(response.status_code, headers, body, content_type=content_type)
    document = json_object(body, content_type)
    whole = complete(call_type, content_type, document)
    return Outcome(
        response.status_code, headers, body, document if whole else None, complete=whole, content_type=content_type
    )


def _total_tokens(document: dict[str, Any]) -> int:
    usage = document.get("usage")
    if isinstance(usage, dict):
        total = usage.get("total_tokens")
        if isinstance(total, int) and total >= 0:
            return total
    return 0
