"""Embeddings: every input item is its own entry.

A batch is looked up item by item; only the missing items go upstream, and the answer
is put back together in the caller's order with the caller's indices. Each entry is a
complete one-item embeddings response, so a single-input hit is the stored body as is.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from app.asgi import JSON, Scope, Send, offload, send_error, send_response
from app.codec import Entry, new_entry
from app.errors import ProxyError, not_cached, upstream_broken
from app.types import Headers
from app.upstream import response_headers

if TYPE_CHECKING:
    from app.proxy import Call, Incoming, Proxy

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
    return orjson.dumps({
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": vector}],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })


def split_tokens(total: int, count: int) -> list[int]:
    """A batch's token count shared out over its items (the upstream reports one total)."""
    share, extra = divmod(total, count)
    return [share + (1 if i < extra else 0) for i in range(count)]


async def handle_embeddings(
    proxy: Proxy, call_type: str, scope: Scope, incoming: Incoming, body: bytes, send: Send
) -> None:
    call, payload = await proxy.open_json(call_type, scope, incoming, body)
    items = split_inputs(payload.get("input"))
    if not proxy.cacheable(call) or items is None:
        await proxy.forward(call, _never, send, "bypass", None)
        return
    params = {k: v for k, v in payload.items() if k != "input"}
    item_keys = await offload(len(body), lambda: [proxy.key_for(call, {**params, "input": item}) for item in items])
    if len(items) == 1:
        # One item: its entry is the whole response, so the generic path (with single
        # flight) serves it byte for byte.
        call.key = item_keys[0]
        await proxy.serve_cacheable(call, _never, send)
        return
    await _batch(proxy, call, send, items, item_keys, payload)


async def _batch(
    proxy: Proxy, call: Call, send: Send, items: list[Item], item_keys: list[str], payload: dict[str, Any]
) -> None:
    found: dict[str, Entry] = {}
    if not call.control.no_cache:
        found = await proxy.chain.get_many(item_keys, call.control.max_age_s)
    cached = sum(1 for key in item_keys if key in found)
    if cached == len(items):
        await _send_hit(proxy, call, send, item_keys, found)
        return
    if call.control.only_if_cached:
        headers = [*_headers(call, "miss", cached, len(items)), (b"x-should-retry", b"false")]
        await send_error(send, not_cached(), headers)
        proxy.done(call, "miss")
        return

    missing = {key: item for key, item in zip(item_keys, items) if key not in found}
    call.body = proxy.upstream_json(call, {**payload, "input": list(missing.values())})
    status = "refresh" if call.control.no_cache else ("partial" if cached else "miss")
    headers = _headers(call, status, cached, len(items))
    url, upstream_headers = proxy.outbound(call)
    started = time.perf_counter()
    try:
        response = await proxy.upstream.call("POST", url, upstream_headers, call.body)
    except ProxyError as error:
        proxy.metrics.upstream_error(call.call_type, error.code)
        await send_error(send, error, headers)
        proxy.done(call, status)
        return
    finally:
        proxy.metrics.upstream(call.call_type, time.perf_counter() - started)

    headers = response_headers(response) + headers
    fresh = _fresh_vectors(response.content, len(missing)) if response.is_success else None
    if fresh is None:
        if response.is_success:
            await send_error(send, upstream_broken("embeddings response does not match its input"), headers)
        else:
            proxy.metrics.upstream_error(call.call_type, str(response.status_code))
            await send_response(send, response.status_code, headers, response.content)
        proxy.done(call, status)
        return
    vectors, upstream_model, total = fresh
    fresh_by_key = dict(zip(missing, zip(vectors, split_tokens(total, len(missing)))))
    if proxy.storable(call):
        ttl = proxy.ttl(call)
        await proxy.chain.set_many({
            key: new_entry(item_document(upstream_model, vector, tokens), "application/json", ttl, tokens)
            for key, (vector, tokens) in fresh_by_key.items()
        })
    body_out = _merge(item_keys, found, fresh_by_key, upstream_model)
    await send_response(send, 200, _json_headers(headers), body_out)
    proxy.done(call, status, sum(found[k].tokens for k in item_keys if k in found))


async def _never() -> dict[str, Any]:
    raise AssertionError("embeddings are never streamed, so the client is never watched")


def _headers(call: Call, status: str, cached: int, total: int) -> Headers:
    headers = call.cache_headers(status)
    if total > 1:
        headers.append((b"x-cache-hits", f"{cached}/{total}".encode()))
    return headers


def _json_headers(headers: Headers) -> Headers:
    out = [(k, v) for k, v in headers if k.lower() != b"content-type"]
    out.append((b"content-type", JSON))
    return out


def _fresh_vectors(body: bytes, expected: int) -> tuple[list[Any], Any, int] | None:
    """(vectors in input order, model, prompt tokens) of an embeddings response."""
    try:
        document = orjson.loads(body)
        data = sorted(document["data"], key=lambda d: d.get("index", 0))
        vectors = [d["embedding"] for d in data]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
    if len(vectors) != expected:
        return None
    usage = document.get("usage") or {}
    tokens = usage.get("total_tokens", usage.get("prompt_tokens", 0))
    return vectors, document.get("model"), tokens if isinstance(tokens, int) else 0


def _merge(
    item_keys: list[str],
    found: dict[str, Entry],
    fresh: dict[str, tuple[Any, int]],
    model: Any,
) -> bytes:
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
    return orjson.dumps({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })


async def _send_hit(proxy: Proxy, call: Call, send: Send, item_keys: list[str], found: dict[str, Entry]) -> None:
    now = time.time()
    headers = _headers(call, "hit", len(item_keys), len(item_keys))
    headers.append((b"age", str(int(max(found[k].age(now) for k in item_keys))).encode()))
    headers.append((b"content-type", JSON))
    await send_response(send, 200, headers, _merge(item_keys, found, {}, None))
    proxy.done(call, "hit", sum(found[k].tokens for k in item_keys))
