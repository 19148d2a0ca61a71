"""Embeddings: every input item is its own entry.

A batch is looked up item by item; only the missing items go upstream, through the
pipeline's single flight like any call (identical batches in flight make one upstream
call), and the answer is put back together in the caller's order with the caller's
indices. Each entry is a complete one-item embeddings response, so a single-input hit is
the stored body as is, served by the pipeline like any other call.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

import orjson

from app import usage
from app.answers import has_items
from app.asgi import JSON, OFFLOAD_BYTES, Message, Send, offload, send_error, send_response
from app.calls.base import Call, Handler, open_json
from app.coalesce import Outcome
from app.codec import Entry, Usage, new_entry
from app.errors import ProxyError, upstream_broken
from app.types import CacheKey, CacheStatus, CallType, Headers

if TYPE_CHECKING:
    from app.pipeline import Pipeline
    from app.request import Request

Item = Any  # a string, or a list of token ids


def split_inputs(value: Any) -> list[Item] | None:
    """The input items of an embeddings request, or None when the shape is not one we key."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, str) for v in value):
        return list(value)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [value]
    if all(isinstance(v, list) and v and all(isinstance(t, int) for t in v) for v in value):
        return list(value)
    return None


def item_document(model: Any, vector: Any, tokens: int) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def split_tokens(total: int, count: int) -> list[int]:
    """A batch's token count shared out over its items (the upstream reports one total)."""
    share, extra = divmod(total, count)
    return [share + (1 if i < extra else 0) for i in range(count)]


def vectors_of(document: dict[str, Any]) -> tuple[list[Any], Any, int]:
    """(vectors in input order, model, prompt tokens) of an embeddings answer."""
    data = sorted(document["data"], key=lambda d: d.get("index", 0) if isinstance(d.get("index"), int) else 0)
    counted = usage.embeddings(document)  # counts made safe: an upstream's numbers are not trusted
    return [d["embedding"] for d in data], document.get("model"), counted.total or counted.input


async def _never() -> Message:
    raise AssertionError("embeddings are never streamed, so the client is never watched")


class Embeddings(Handler):
    call_type = CallType.EMBEDDINGS
    paths = ("/v1/embeddings",)

    def complete(self, content_type: str, document: dict[str, Any] | None) -> bool:
        return has_items(document, "data", "embedding", (list, str))  # floats, or base64

    def usage(self, answer: dict[str, Any] | None) -> Usage:
        return usage.embeddings(answer)

    uncached = "only an input of a string, a list of strings, or token ids is cached"

    async def open(self, pipeline: Pipeline, request: Request) -> Call:
        return (await self._open(pipeline, request))[0]

    async def _open(self, pipeline: Pipeline, request: Request) -> tuple[Call, dict[str, Any], list[Item] | None]:
        """The call (a single input keyed like any call, a batch item by item), its payload
        and its input items (None when it has no key: forwarded as it is)."""
        call, payload = await open_json(pipeline, self, request)
        items = split_inputs(payload.get("input"))
        if not pipeline.cacheable(call) or items is None:
            return call, payload, None
        params = {k: v for k, v in payload.items() if k != "input"}

        def keys() -> list[CacheKey]:
            return [pipeline.key_for(call, {**params, "input": item}) for item in items]

        item_keys = keys() if len(request.body) < OFFLOAD_BYTES else await offload(keys)
        if len(items) == 1:
            call.key = item_keys[0]
        else:
            call.item_keys = item_keys
        return call, payload, items

    async def handle(self, pipeline: Pipeline, request: Request, send: Send) -> None:
        call, payload, items = await self._open(pipeline, request)
        if call.item_keys is None or items is None:
            await pipeline.serve(call, _never, send)  # keyed as one call, or not at all
            return
        await self._batch(pipeline, call, send, items, call.item_keys, payload)

    async def _batch(
        self,
        pipeline: Pipeline,
        call: Call,
        send: Send,
        items: list[Item],
        item_keys: list[str],
        payload: dict[str, Any],
    ) -> None:
        found: dict[str, Entry] = {}
        if not call.control.no_cache:
            found = await pipeline.chain.get_many(item_keys, call.control.max_age_s)
        cached = sum(1 for key in item_keys if key in found)
        if cached == len(items):
            await self._send_hit(pipeline, call, send, item_keys, found)
            return
        if call.control.only_if_cached:
            await pipeline.respond.not_cached(call, send, _headers(call, CacheStatus.MISS, cached, len(items)))
            return
        missing = {key: item for key, item in zip(item_keys, items) if key not in found}
        status = CacheStatus.REFRESH if call.control.no_cache else (CacheStatus.PARTIAL if cached else CacheStatus.MISS)
        headers = _headers(call, status, cached, len(items))
        upstream = MissingItems(list(missing))
        body = pipeline.upstream_json(call, {**payload, "input": list(missing.values())})
        batch = Call(
            upstream, call.model, call.control, call.started, call.head, call.path, upstream.flight_key(), body
        )
        batch.policy = call.policy  # its entries' TTL
        try:
            outcome = await pipeline.fetch(batch, lambda: upstream.cached(pipeline))
        except ProxyError as error:
            await send_error(send, error, headers)
            pipeline.respond.done(call, status)
            return
        headers = outcome.headers + headers
        if not outcome.ok or not outcome.complete:
            if outcome.ok:
                await send_error(send, upstream_broken("embeddings response does not match its input"), headers)
            else:
                await send_response(send, outcome.status, headers, outcome.body)
            pipeline.respond.done(call, status)
            return
        assert outcome.completion is not None
        vectors, model, total = vectors_of(outcome.completion)
        fresh = dict(zip(missing, zip(vectors, split_tokens(total, len(missing)))))
        await send_response(send, 200, _json_headers(headers), _merge(item_keys, found, fresh, model))
        pipeline.respond.done(call, status, usage.added(found[k].usage for k in item_keys if k in found))

    async def _send_hit(
        self, pipeline: Pipeline, call: Call, send: Send, item_keys: list[str], found: dict[str, Entry]
    ) -> None:
        now = time.time()
        headers = _headers(call, CacheStatus.HIT, len(item_keys), len(item_keys))
        headers.append((b"age", str(int(max(found[k].age(now) for k in item_keys))).encode()))
        headers.append((b"content-type", JSON))
        await send_response(send, 200, headers, _merge(item_keys, found, {}, None))
        pipeline.respond.done(call, CacheStatus.HIT, usage.added(found[k].usage for k in item_keys))


class MissingItems(Embeddings):
    """The upstream call for a batch's missing items: one answer, stored item by item."""

    def __init__(self, item_keys: list[CacheKey]) -> None:
        self.item_keys = item_keys

    def flight_key(self) -> CacheKey:
        # Identical batches (same missing items, same order) share one flight.
        return "batch:" + hashlib.sha256("\n".join(self.item_keys).encode()).hexdigest()

    def complete(self, content_type: str, document: dict[str, Any] | None) -> bool:
        return super().complete(content_type, document) and len(document["data"]) == len(self.item_keys)  # type: ignore[index]

    async def cached(self, pipeline: Pipeline) -> Outcome | None:
        """The answer as if from the upstream, once every item is stored (by another
        process of the fleet that called the upstream for the same batch)."""
        found = await pipeline.chain.get_many(self.item_keys)
        if len(found) < len(self.item_keys):
            return None
        body = _merge(self.item_keys, found, {}, None)
        return Outcome(200, [(b"content-type", JSON)], body, orjson.loads(body), complete=True)

    def entries(self, call: Call, outcome: Outcome, body: bytes, ttl_s: float | None) -> dict[CacheKey, Entry]:
        assert outcome.completion is not None
        vectors, model, total = vectors_of(outcome.completion)
        return {
            key: new_entry(item_document(model, vector, tokens), "application/json", ttl_s, Usage(tokens, tokens))
            for key, vector, tokens in zip(self.item_keys, vectors, split_tokens(total, len(self.item_keys)))
        }


def _headers(call: Call, status: CacheStatus, cached: int, total: int) -> Headers:
    headers = call.cache_headers(status)
    if total > 1:
        headers.append((b"x-cache-hits", f"{cached}/{total}".encode()))
    return headers


def _json_headers(headers: Headers) -> Headers:
    out = [(k, v) for k, v in headers if k.lower() != b"content-type"]
    out.append((b"content-type", JSON))
    return out


def _merge(item_keys: list[str], found: dict[str, Entry], fresh: dict[str, tuple[Any, int]], model: Any) -> bytes:
    data = []
    tokens = 0
    for index, key in enumerate(item_keys):
        if key in found:
            document = orjson.loads(found[key].body)
            vector = document["data"][0]["embedding"]
            model = model if model is not None else document.get("model")
            tokens += found[key].tokens
        else:
            vector, item_tokens = fresh[key]
            tokens += item_tokens
        data.append({"object": "embedding", "index": index, "embedding": vector})
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
