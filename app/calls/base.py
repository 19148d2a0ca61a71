"""The protocol every call type implements, and the call it produces.

A handler turns a request into a `Call` (its key, and the request the upstream gets),
says which upstream answers are whole answers of its type (only those are stored), and,
for a call type that streams, how a stream is assembled into one answer and replayed
from one. The pipeline (`app/pipeline.py`) does the rest, the same for every call type.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from app import usage
from app.asgi import OFFLOAD_BYTES, offload
from app.codec import Entry, Usage, new_entry
from app.control import CacheControl
from app.errors import ProxyError, bad_request
from app.exact_json import parse_object
from app.request import Head
from app.types import CacheKey, CacheStatus, CallType, Headers

if TYPE_CHECKING:
    from app.asgi import Send
    from app.coalesce import Outcome
    from app.pipeline import Pipeline
    from app.policy import Policy
    from app.request import Request
    from app.semantic.cache import Asked


@dataclass(slots=True)
class Call:
    """One cacheable request on its way through the pipeline."""

    handler: Handler
    model: Any
    control: CacheControl
    started: float
    head: Head
    path: str
    key: CacheKey | None = None
    body: bytes = b""
    # Set when the body sent upstream is a rebuilt form with a new boundary.
    body_type: bytes | None = None
    stream: bool = False
    include_usage: bool = False
    asked: Asked | None = None  # the semantic side, when the semantic cache applies
    policy: Policy | None = None  # the tenant policy that applies (`app/policy.py`)
    # A call keyed item by item (an embeddings batch): each item's key, in input order.
    item_keys: list[CacheKey] | None = None

    @property
    def call_type(self) -> CallType:
        return self.handler.call_type

    def cache_headers(self, status: CacheStatus, key: CacheKey | None = None) -> Headers:
        named = (b"x-cache-status", status.encode())
        # The policy first: the fast path writes its line before a prebuilt head.
        out: Headers = [named] if self.policy is None else [self.policy.header, named]
        key = key or self.key
        if key is not None:
            out.append((b"x-cache-key", key.encode()))
        return out


class Handler(ABC):
    call_type: ClassVar[CallType]
    paths: ClassVar[tuple[str, ...]]  # with the /v1 prefix; each is served without it too
    # Whether `stream: true` asks for an event stream (`assemble` and `replay` then apply).
    streams: ClassVar[bool] = False
    # Whether every answer is relayed to the client as it arrives and stored as the bytes
    # it was (audio): `complete` judges it by its content type, `assemble` an SSE one.
    relays: ClassVar[bool] = False
    # Request headers that change the answer: keyed with the body (e.g. `anthropic-version`).
    key_headers: ClassVar[frozenset[bytes]] = frozenset()
    # Why a request the cache applies to still has no key (`/cache/explain` says it).
    uncached: ClassVar[str] = "this request is not cached"

    def credential(self, api_key: str) -> tuple[bytes, bytes]:
        """The header a route's configured `api_key` is sent in, for this API."""
        return (b"authorization", b"Bearer " + api_key.encode())

    def error_body(self, error: ProxyError) -> bytes:
        """An error llmcache answers itself, in this API's error shape (OpenAI's by default)."""
        return error.body()

    @abstractmethod
    async def open(self, pipeline: Pipeline, request: Request) -> Call:
        """The request parsed and keyed (a 400 if it cannot be): the call `handle` serves,
        and the one the admin routes seed and explain. No I/O."""

    async def handle(self, pipeline: Pipeline, request: Request, send: Send) -> None:
        """Turn the request into a call and serve it through the pipeline."""
        await pipeline.serve(await self.open(pipeline, request), request.receive, send)

    @abstractmethod
    def complete(self, content_type: str, document: dict[str, Any] | None) -> bool:
        """Whether a 2xx body is a whole answer of this call type (`document`: the body as
        a JSON object, None when it is not one). Only whole answers are stored."""

    def assemble(self, raw: bytes) -> dict[str, Any] | None:
        """One answer from a whole event stream, or None if it holds none (no streaming)."""
        return None

    def whole_stream(self, raw: bytes, content_type: str) -> tuple[dict[str, Any] | None, bool]:
        """A finished stream's answer, and whether it is a whole answer of this call type
        (only those are stored). A relayed answer is kept as its bytes: its answer is None.
        Events of the wrong shape hold no answer."""
        sse = content_type.startswith("text/event-stream")
        if self.relays:
            return None, self.complete(content_type, None) or (sse and self._assembled(raw) is not None)
        answer = self._assembled(raw)
        if answer is not None and not self.complete("application/json", answer):
            answer = None
        return answer, answer is not None

    def _assembled(self, raw: bytes) -> dict[str, Any] | None:
        try:
            return self.assemble(raw)
        except (TypeError, AttributeError, KeyError, ValueError, IndexError):
            return None

    def replay(self, answer: dict[str, Any], call: Call) -> Iterator[bytes]:
        """The event stream equivalent to `answer`, for a streamed request that hits."""
        raise NotImplementedError(f"{self.call_type} does not stream")

    def usage(self, answer: dict[str, Any] | None) -> Usage:
        """What a whole answer cost upstream (`app/usage.py`): by default its total only."""
        return usage.total_only(answer)

    def entries(self, call: Call, outcome: Outcome, body: bytes, ttl_s: float | None) -> dict[CacheKey, Entry]:
        """What a whole answer stores: by default one entry under the call's key."""
        assert call.key is not None
        return {call.key: new_entry(body, outcome.content_type, ttl_s, self.usage(outcome.completion))}


_MISSING: Any = object()


async def open_json(pipeline: Pipeline, handler: Handler, request: Request) -> tuple[Call, dict[str, Any]]:
    """A JSON request's call and payload (without `cache`); the upstream body is the
    original bytes unless the payload had to change (a `cache` field, a renamed model)."""
    body = request.body
    payload = parse_object(body) if len(body) < OFFLOAD_BYTES else await offload(parse_object, body)
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request(f"'stream' must be a boolean, not {type(stream).__name__}", "invalid_request")
    body_control = payload.pop("cache", _MISSING)
    control = None if body_control is _MISSING else body_control
    call = pipeline.begin(handler, request, payload.get("model"), control)
    changed = body_control is not _MISSING or pipeline.upstream_model(call.model) is not None
    call.body = pipeline.upstream_json(call, payload) if changed else body
    call.stream = handler.streams and stream is True
    options = payload.get("stream_options")
    call.include_usage = call.stream and isinstance(options, dict) and options.get("include_usage") is True
    return call, payload


class JsonHandler(Handler):
    """A call type whose requests are JSON objects: parsed exactly, keyed over every
    parameter but the transport ones, served through the pipeline."""

    async def open(self, pipeline: Pipeline, request: Request) -> Call:
        call, payload = await open_json(pipeline, self, request)
        self.prepare(call, payload)
        if pipeline.cacheable(call) and self.keyable(payload):
            small = len(request.body) < OFFLOAD_BYTES  # the usual case: no thread, no coroutine
            call.key = pipeline.key_for(call, payload) if small else await offload(pipeline.key_for, call, payload)
            self.keyed(pipeline, call, payload)
        return call

    def prepare(self, call: Call, payload: dict[str, Any]) -> None:
        """Anything the call needs from the payload besides its key (none by default)."""

    def keyable(self, payload: dict[str, Any]) -> bool:
        """False for a request that must not be cached (it depends on changing state)."""
        return True

    def keyed(self, pipeline: Pipeline, call: Call, payload: dict[str, Any]) -> None:
        """After the key: what else a cacheable call of this type does (none by default)."""
