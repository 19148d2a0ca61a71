"""The request path of the cached routes, top to bottom, the same for every call type:

    read → (handler: parse, key) → control → lookup → single flight → upstream → respond → store

A handler (`app/calls/`) turns a request into a `Call`; everything after that is here,
once. Raw ASGI on purpose: this is the hot path, and a framework's request objects,
routing and middleware cost more than the whole cache lookup.

In front of it all, the fast path: a request identical to one whose call the pipeline
has looked up before (`app/memo.py`) goes straight to the local tier with what was
decided then, and a hit there is answered from bytes built once per entry
(`respond.Prebuilt`). Anything else — no plan, no local tier, not found there — takes
the whole path, which finds exactly what the fast path would have.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx

from app import keys, stale, tracing
from app.asgi import ClientGone, Receive, Scope, Send, read_body, send_error
from app.calls.base import Call, Handler
from app.coalesce import Flight, Flights, Outcome, json_object
from app.codec import Entry
from app.config import Settings
from app.control import parse_control
from app.errors import ProxyError, internal_error
from app.exact_json import dumps
from app.memo import Memo, Plan, memo_key
from app.metrics import Metrics
from app.policy import Policies
from app.prices import Prices, configured_rows
from app.request import Head, Request, read_head
from app.respond import Responder, prebuild
from app.routing import Routing
from app.stale import StaleWindows, Use, use_of
from app.tags import with_tags
from app.tiers.chain import Chain
from app.tiers.fleet import FleetLock
from app.types import CacheKey, CacheStatus, Headers
from app.upstream import UPSTREAM_ERRORS, Upstream, request_headers, response_headers, upstream_url

if TYPE_CHECKING:
    from app.semantic.cache import Match, SemanticCache

log = logging.getLogger("llmcache.pipeline")
# Where the flight a call waits for runs: here (single flight), or in another process.
IN_PROCESS = {tracing.FLIGHT_SCOPE: "process"}
IN_FLEET = {tracing.FLIGHT_SCOPE: "fleet"}
# Parameters that change what the model answers: leaving one out of the key serves one
# request's answer to another that asked something else.
ANSWER_PARAMS = frozenset(
    (
        "model",
        "messages",
        "input",
        "prompt",
        "instructions",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "n",
        "stop",
        "tools",
        "tool_choice",
        "functions",
        "response_format",
        "text",
        "reasoning",
        "reasoning_effort",
        "thinking",
        "logprobs",
        "top_logprobs",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "previous_response_id",
        "file",
        "language",
        "voice",
        "dimensions",
        "encoding_format",
        "query",
        "documents",
        "size",
        "quality",
    )
)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        chain: Chain,
        upstream: Upstream,
        metrics: Metrics,
        semantic: SemanticCache | None = None,
    ) -> None:
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
        self.ignored = frozenset(settings.cache.ignore_params)
        changing = sorted(self.ignored & ANSWER_PARAMS)
        if changing:
            log.warning(
                "cache.ignore_params lists %s, which change the answer: requests that differ in them "
                "will be served each other's answers",
                ", ".join(changing),
            )
        self.respond = Responder(metrics, Prices(configured_rows(settings.prices), upstream_name=self.upstream_model))
        self.policies = Policies(settings.policies) if settings.policies else None
        self.stale = StaleWindows.configured(settings.cache.stale.if_error_s, settings.cache.stale.while_revalidate_s)
        # Plans are only worth keeping where a hit can be answered without I/O.
        self.memo = Memo() if chain.front is not None else None
        self.peek = tracing.traced_peek(chain)

    # --- entry --------------------------------------------------------------------------

    async def handle(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            head = self.head_of(scope)
            body = await read_body(receive, self.max_body, head.content_length)
            memo = self.memo
            if memo is not None:
                key = head.memo_key = memo_key(scope["path"], scope.get("query_string", b""), head.read, body)
                plan = None if key is None else memo.get(key)
                if plan is not None and await self.fast(plan, send):
                    return
            await handler.handle(self, Request(scope, receive, head, body), send)
        except ProxyError as error:
            await send_error(send, error, body=handler.error_body(error))
        except ClientGone:
            return
        except Exception:
            # A bug, not a client's or an upstream's fault: logged in full, and the client
            # still gets an answer in the API's error shape (if its response has not begun).
            log.exception("unexpected error on %r", scope["path"])
            try:
                failure = internal_error()
                await send_error(send, failure, body=handler.error_body(failure))
            except Exception:  # the response had begun: uvicorn closes the connection
                pass

    def head_of(self, scope: Scope) -> Head:
        """A request's head, with the headers its policies match by (a described one's too)."""
        head = read_head(scope)
        policies = self.policies
        if policies is not None and policies.header_names:
            policies.gather(head)
        return head

    async def fast(self, plan: Plan, send: Send) -> bool:
        """Answer a remembered request from the local tier, if it holds the entry."""
        started = time.perf_counter()
        now = time.time()
        hit = self.peek(plan.key, plan.max_age_s, now, prebuild)
        if hit is None:
            return False
        await self.respond.prebuilt(plan, hit, send, started, now)
        return True

    # --- what a call is keyed and stored by ---------------------------------------------

    def begin(self, handler: Handler, request: Request, model: Any, body_control: Any) -> Call:
        head = request.head
        control = parse_control(head.controls, head.cache_control, body_control)
        call = Call(handler, model, control, time.perf_counter(), head, request.path)
        if self.policies is not None:
            policy = call.policy = self.policies.match(head, model)
            if policy is not None:
                if policy.forbidden:
                    policy.check(head, body_control)
                if policy.namespace is not None and control.namespace is not None:
                    control.namespace = policy.nested(control.namespace)
        return call

    def cacheable(self, call: Call) -> bool:
        use = call.control.use_cache
        if call.call_type not in self.enabled or use is False:
            return False
        policy = call.policy
        mode = self.cache.mode if policy is None or policy.mode is None else policy.mode
        return use is True or mode == "default_on"

    def scope_of(self, call: Call) -> str | None:
        return None if self.cache.share_across_keys else keys.credential_scope(call.head.credentials)

    def namespace_of(self, call: Call) -> str | None:
        policy = call.policy
        if policy is None or policy.namespace is None:
            return call.control.namespace or self.cache.namespace
        return call.control.namespace or policy.namespace  # a request's own: nested in `begin`

    def semantic_for(self, call: Call) -> SemanticCache | None:
        """The semantic cache, unless the call's policy turns it off."""
        policy = call.policy
        return None if policy is not None and policy.semantic is False else self.semantic

    def keyed(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters that key a call: all but the ignored ones (config and control)."""
        ignored = self.ignored | call.control.ignore_params if call.control.ignore_params else self.ignored
        return {k: v for k, v in params.items() if k not in ignored} if ignored else params

    def key_for(self, call: Call, params: dict[str, Any]) -> CacheKey:
        """The one place a call's key is made (`handler.open` calls it for every key)."""
        if self.ignored or call.control.ignore_params:
            params = self.keyed(call, params)
        group = self.routing.group_of(call.model)
        named = call.handler.key_headers
        headers = [(n.decode(), v.decode("latin-1")) for n, v in call.head.raw if n in named] if named else None
        canonical = keys.canonical(
            call.call_type, group, params, self.scope_of(call), self.namespace_of(call), call.head.query, headers
        )
        shown = call.head.canonicals
        if shown is not None:  # a request /cache/explain opened
            shown.append(canonical)
        return keys.key_of(canonical)

    def ttl(self, call: Call) -> float | None:
        if call.policy is not None:
            return call.policy.ttl(call.control.ttl_s, self.cache.ttl_s)
        return call.control.ttl_s if call.control.ttl_s is not None else self.cache.ttl_s

    def stale_windows(self, call: Call) -> StaleWindows:
        """How stale an answer `call` accepts, and how long tiers keep its entry past its
        TTL: the request's controls, over the tenant's policy, over `cache.stale`."""
        policy = call.policy  # its None fields keep the global windows
        configured = (
            self.stale
            if policy is None
            else self.stale.overridden(policy.stale_if_error_s, policy.stale_while_revalidate_s)
        )
        return configured.requested(call.control.stale_if_error_s, call.control.max_stale_s)

    def storable(self, call: Call) -> bool:
        return not call.control.no_store and self.ttl(call) != 0

    def upstream_model(self, model: Any) -> str | None:
        return self.routing.route(model).upstream_model

    def upstream_json(self, call: Call, payload: dict[str, Any]) -> bytes:
        rename = self.upstream_model(call.model)
        return dumps(payload if rename is None else {**payload, "model": rename})

    def outbound(self, call: Call) -> tuple[str, Headers]:
        """Where and with which headers the call goes upstream (built only on a miss)."""
        route = self.routing.route(call.model)
        url = upstream_url(route.base_url, call.path, call.head.query)
        credential = None if route.api_key is None else call.handler.credential(route.api_key)
        headers = request_headers(call.head.raw, credential, drop_controls=True, content_type=call.body_type)
        return url, tracing.forwarded(headers)

    def plan_of(self, call: Call) -> Plan | None:
        """What the fast path may remember of a call about to be looked up: a keyed call
        whose hit is its entry as stored (not a refresh, not a stream replayed from an answer)."""
        if call.key is None or call.control.no_cache or (call.stream and call.handler.streams):
            return None
        model = call.model if isinstance(call.model, str) else ""
        return Plan(call.call_type, model, call.key, call.control.max_age_s, call.policy)

    def remember(self, call: Call) -> None:
        """Keep the plan of a call about to be looked up, for the identical requests to come."""
        memo_key = call.head.memo_key
        if memo_key is not None and self.memo is not None:
            plan = self.plan_of(call)
            if plan is not None:
                self.memo.remember(memo_key, plan)

    # --- serving ------------------------------------------------------------------------

    async def lookup(self, call: Call, stale_s: float = 0.0) -> Entry | None:
        """The call's entry; with `stale_s`, perhaps one expired less than that long ago."""
        if call.key is None or call.control.no_cache:
            return None
        entry = await self.chain.get(call.key, call.control.max_age_s, stale_s)
        if (
            entry is not None
            and call.stream
            and call.handler.streams
            and json_object(entry.body, entry.content_type) is None
        ):
            return None  # not an answer a stream can be replayed from: answer it anew
        return entry

    async def serve(self, call: Call, receive: Receive, send: Send) -> None:
        """A call without a key is forwarded (bypass); one with a key is looked up, then
        joins an identical call in flight, or leads a new one."""
        self.remember(call)
        if call.key is None:
            await self.forward(call, receive, send, CacheStatus.BYPASS, flight=None)
            return
        windows = self.stale_windows(call)
        entry = await self.lookup(call, windows.serve_s)
        fallback: Entry | None = None  # what answers if the upstream fails (stale-if-error)
        if entry is not None:
            use = use_of(entry, time.time(), windows) if windows.serve_s else Use.FRESH
            if use is Use.FRESH:
                await self.respond.entry(call, send, entry)
                return
            if use is Use.REVALIDATE:
                if not call.control.only_if_cached:  # that client asked that the upstream not be called
                    self.revalidate(call)
                await self.respond.entry(call, send, entry, CacheStatus.STALE, warning=stale.STALE_WARNING)
                return
            if use is Use.IF_ERROR:
                fallback = entry
        if call.control.only_if_cached:  # a semantic match is a cached answer too
            match = await self.semantic_match(call)
            if match is not None:
                await self.respond.entry(call, send, match.entry, CacheStatus.SEMANTIC_HIT, match)
            else:
                await self.respond.not_cached(call, send, call.cache_headers(CacheStatus.MISS))
            return
        status = CacheStatus.REFRESH if call.control.no_cache else CacheStatus.MISS
        flight = self.flights.join(call.key)
        if flight is not None:
            # Answered by an identical request's upstream call: an upstream call saved.
            self.metrics.coalesced.inc()
            with tracing.span(tracing.FLIGHT_WAIT, IN_PROCESS):
                if fallback is None:
                    await self.respond.follow(call, flight, receive, send, CacheStatus.COALESCED)
                else:
                    await stale.answer(
                        self.respond, call, flight, receive, send, CacheStatus.COALESCED, fallback, follower=True
                    )
            return
        flight = self.flights.lead(call.key, call.stream, call.include_usage)
        match = await self.semantic_match(call)
        if match is not None:
            self.settle(flight, match.entry)
            await self.respond.entry(call, send, match.entry, CacheStatus.SEMANTIC_HIT, match)
            return
        held, entry = await self.lead_in_fleet(call.key)
        if entry is not None:
            self.metrics.coalesced.inc()
            self.settle(flight, entry)
            await self.respond.entry(call, send, entry, CacheStatus.COALESCED)
            return
        await self.forward(call, receive, send, status, flight, held, fallback)

    async def lead_in_fleet(self, key: CacheKey) -> tuple[FleetLock | None, Entry | None]:
        """The fleet's lock on calling the upstream for `key` (None without a shared tier, or
        after a wait that found nothing), or the entry another process's call stored while
        this one waited for it."""
        lock = await self.chain.fleet.acquire(key)
        if lock is not False:
            return (lock if isinstance(lock, FleetLock) else None), None
        with tracing.span(tracing.FLIGHT_WAIT, IN_FLEET):
            return None, await self.chain.fleet.wait(key, lambda: self.chain.get(key))

    async def semantic_match(self, call: Call) -> Match | None:
        """An entry answering a paraphrase of the call's question, if the semantic cache applies."""
        if call.asked is None or self.semantic is None or call.control.no_cache:
            return None
        return await self.semantic.lookup(
            call.asked, call.head.authorization, call.control.similarity_threshold, call.control.max_age_s
        )

    def revalidate(self, call: Call) -> None:
        """Refresh a stale entry behind its answer, once: an identical call in flight is
        joined for good (never left, so its upstream call finishes and stores even if its
        own clients go); else one is led with no client, whole even if this call streams,
        and stored as a miss's answer is."""
        assert call.key is not None
        if self.flights.join(call.key) is not None:
            return
        flight = self.flights.lead(call.key, False, False)
        flight.producer = self.chain.background.spawn(self._refresh(stale.unstreamed(call), flight))

    async def _refresh(self, call: Call, flight: Flight) -> None:
        key = call.key
        assert key is not None
        try:
            held, entry = await self.lead_in_fleet(key)
            if entry is not None:  # another process of the fleet refreshed it
                self.settle(flight, entry)
                return
            await self._fly(call, flight, held)
        finally:
            if not flight.finished:  # whatever stopped it, a request that joined gets an answer
                flight.finish(error=internal_error())
                self.flights.land(flight)

    def settle(self, flight: Flight, entry: Entry) -> None:
        """A led flight answered without the upstream: its followers get `entry` too."""
        flight.finish(Outcome.of_entry(entry))
        self.flights.land(flight)

    async def fetch(self, call: Call, cached: Callable[[], Awaitable[Outcome | None]]) -> Outcome:
        """The upstream's whole (non-stream) answer to a keyed call, through single flight:
        an identical call in flight here is joined; one in flight in another process is
        waited for (`cached` then gives its stored answer); else one is led and stored as
        the call's handler says. For callers that build their own response (batches)."""
        assert call.key is not None
        flight = self.flights.join(call.key)
        if flight is not None:
            self.metrics.coalesced.inc()
            try:
                with tracing.span(tracing.FLIGHT_WAIT, IN_PROCESS):
                    await flight.wait_finished()
            finally:
                flight.leave()
        else:
            flight = self.flights.lead(call.key, False, False)
            lock = await self.chain.fleet.acquire(call.key)
            if lock is False:
                with tracing.span(tracing.FLIGHT_WAIT, IN_FLEET):
                    outcome = await self.chain.fleet.wait(call.key, cached)
                if outcome is not None:
                    self.metrics.coalesced.inc()
                    flight.finish(outcome)
                    self.flights.land(flight)
                    return outcome
            flight.producer = self.chain.background.spawn(
                self._fly(call, flight, lock if isinstance(lock, FleetLock) else None)
            )
            await flight.wait_finished()
        if flight.error is not None:
            raise flight.error
        assert flight.outcome is not None
        return flight.outcome

    # --- upstream, leader side ----------------------------------------------------------

    async def forward(
        self,
        call: Call,
        receive: Receive,
        send: Send,
        status: CacheStatus,
        flight: Flight | None,
        lock: FleetLock | None = None,
        fallback: Entry | None = None,
    ) -> None:
        """Call the upstream for `call`; `flight` (if any) lets followers share the result;
        `fallback` answers instead if the upstream fails (stale-if-error).

        The call runs in a task of its own: a client that leaves does not stop it while
        others wait on it, and storing happens after this client has its answer.
        """
        if flight is None:
            flight = Flight(call.key or "", call.stream, call.include_usage)
        flight.producer = self.chain.background.spawn(self._fly(call, flight, lock))
        if fallback is not None:
            await stale.answer(self.respond, call, flight, receive, send, status, fallback, follower=False)
        elif call.stream:
            await self.respond.live(call, flight, receive, send, status)
        else:
            await self.respond.outcome(call, flight, send, status)

    async def _fly(self, call: Call, flight: Flight, lock: FleetLock | None) -> None:
        """Run the upstream call of a flight, publish its outcome, store it, land it.

        The flight lands only after the entry is written, so an identical request that
        arrives in between joins the flight instead of calling the upstream again; with a
        fleet lock the shared tier is written before the lock is released, so the other
        processes find the entry when they are told.
        """
        started = time.perf_counter()
        try:
            with tracing.span(tracing.UPSTREAM, client=True) as traced:
                outcome = await (self._produce_stream(call, flight) if call.stream else self._produce_body(call))
                if traced is not None:
                    traced.set_attribute(tracing.HTTP_STATUS, outcome.status)
                    if not outcome.ok:
                        tracing.failed(traced)
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
            self._count(call, outcome)
            flight.finish(outcome)
            if outcome.ok and outcome.complete and call.key is not None and self.storable(call):
                with tracing.span(tracing.STORE):
                    await self._store(call, outcome, durable=lock is not None)
        finally:
            self.metrics.upstream(call.call_type, time.perf_counter() - started)
            self.flights.land(flight)
            if lock is not None:
                await self.chain.fleet.release(lock)

    def _count(self, call: Call, outcome: Outcome) -> None:
        if not outcome.ok:
            self.metrics.upstream_error(call.call_type, "stream_cut" if outcome.cut else str(outcome.status))
        elif not outcome.complete:
            self.metrics.upstream_error(call.call_type, "incomplete")
        elif isinstance(call.model, str):
            self.metrics.saw_model(call.model)

    async def put(self, call: Call, entries: dict[CacheKey, Entry], durable: bool) -> None:
        """Write a call's entries (an upstream's answer, or a seeded one) with its tags, kept
        past their TTL as long as the call's stale windows need."""
        if call.control.tags:
            entries = with_tags(entries, call.control.tags)
        await self.chain.set_many(entries, durable, self.stale_windows(call).keep_s)

    async def _store(self, call: Call, outcome: Outcome, durable: bool) -> None:
        body = dumps(outcome.completion) if outcome.sse else outcome.body
        ttl = self.ttl(call)
        await self.put(call, call.handler.entries(call, outcome, body, ttl), durable)
        if call.asked is not None and self.semantic is not None and call.key is not None:
            self.chain.background.spawn(self.semantic.remember(call.asked, call.key, ttl))

    async def _produce_body(self, call: Call) -> Outcome:
        url, headers = self.outbound(call)
        response = await self.upstream.call("POST", url, headers, call.body)
        return self._outcome(call.handler, response, response.content)

    async def _produce_stream(self, call: Call, flight: Flight) -> Outcome:
        url, outbound_headers = self.outbound(call)
        relays = call.handler.relays
        async with self.upstream.open("POST", url, outbound_headers, call.body) as response:
            headers = response_headers(response)
            content_type = response.headers.get("content-type", "application/octet-stream")
            if not response.is_success or not (relays or content_type.startswith("text/event-stream")):
                return self._outcome(call.handler, response, await response.aread())
            flight.started(response.status_code, headers)
            try:
                async for chunk in response.aiter_bytes():
                    flight.push(chunk)
            except UPSTREAM_ERRORS as exc:
                log.info("upstream stream cut for %s: %r", call.key, exc)
                flight.end(cut=True)
                return Outcome(response.status_code, headers, b"", cut=True, sse=True)
        # Live clients finish now; assembly happens after their responses have ended.
        flight.end()
        raw = b"".join(flight.chunks)
        # Not cut: the upstream ended its response. Whether it is an answer to keep is
        # `complete`; a live client was relayed it as it came, either way.
        answer, whole = call.handler.whole_stream(raw, content_type)
        if relays:  # kept as the bytes that came
            return Outcome(response.status_code, headers, raw, complete=whole, content_type=content_type)
        return Outcome(response.status_code, headers, raw, answer, sse=True, complete=whole)

    @staticmethod
    def _outcome(handler: Handler, response: httpx.Response, body: bytes) -> Outcome:
        headers = response_headers(response)
        content_type = response.headers.get("content-type", "application/octet-stream")
        if not response.is_success:
            return Outcome(response.status_code, headers, body, content_type=content_type)
        document = json_object(body, content_type)
        whole = handler.complete(content_type, document)
        return Outcome(
            response.status_code, headers, body, document if whole else None, complete=whole, content_type=content_type
        )
