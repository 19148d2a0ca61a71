"""Operational routes: health, readiness, metrics and the /cache admin API."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from app.described import admin_document, described, open_described
from app.errors import ProxyError, bad_request, too_large
from app.explain import explain
from app.runtime import Runtime
from app.seeding import seed
from app.tags import MAX_INVALIDATED_TAGS, TAG_CHARACTERS, valid_tag
from app.types import valid_key, valid_namespace

router = APIRouter()


def runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


def json_response(document: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(document), status_code=status, media_type="application/json")


def require_admin(request: Request) -> None:
    token = runtime(request).settings.admin.token
    if token is None:
        raise ProxyError(404, "not found", "invalid_request_error", "not_found")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ProxyError(401, "a valid admin bearer token is required", "authentication_error", "invalid_admin_token")


@router.get("/health")
async def health() -> Response:
    return json_response({"status": "ok"})


@router.get("/ready")
async def ready(request: Request) -> Response:
    ready, tiers = await runtime(request).chain.ready()
    document = {
        "status": "ready" if ready else "not ready",
        "tiers": [{"name": h.name, "ok": h.ok, "required": required} for h, required in tiers],
    }
    return json_response(document, 200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    rt = runtime(request)
    if not rt.settings.metrics.enabled:
        raise ProxyError(404, "metrics are disabled", "invalid_request_error", "not_found")
    return Response(rt.metrics.render(), media_type=rt.metrics.content_type)


admin = APIRouter(prefix="/cache", dependencies=[Depends(require_admin)])


def hit_rate(counts: dict[str, int]) -> float:
    """Answers from the cache (hits, semantic hits, stale answers) over every cacheable
    request that was not bypassed."""
    considered = sum(n for status, n in counts.items() if status != "bypass")
    return (counts["hit"] + counts["semantic-hit"] + counts["stale"]) / considered if considered else 0.0


@admin.get("/stats")
async def stats(request: Request) -> Response:
    rt = runtime(request)
    counts = rt.metrics.status_counts()
    tokens, usd = rt.metrics.savings()
    tiers = [
        {"name": tier.name, "type": tier.type, "entries": s.entries, "bytes": s.bytes}
        for tier, s in await rt.chain.stats()
    ]
    return json_response(
        {
            "requests": counts,
            "hit_rate": hit_rate(counts),
            "tiers": tiers,
            "tokens_saved": {"total": int(sum(tokens.values())), "by_model": {m: int(n) for m, n in tokens.items()}},
            "cost_saved_usd": {"total": sum(usd.values()), "by_model": usd},
        }
    )


@admin.get("/ping")
async def ping(request: Request) -> Response:
    rt = runtime(request)
    health = await rt.chain.ping()
    semantic = await rt.semantic.ping() if rt.semantic is not None else None
    return json_response(
        {
            "tiers": [
                {"name": h.name, "type": h.type, "ok": h.ok, "latency_ms": h.latency_ms, "error": h.error}
                for h in health
            ],
            "semantic": semantic,
        }
    )


@admin.delete("/keys/{key:path}")
async def delete_key(key: str, request: Request) -> Response:
    if not valid_key(key):
        raise bad_request(f"not a cache key: {key[:200]!r}", "invalid_key")
    return json_response({"deleted": await runtime(request).chain.delete(key)})


@admin.post("/flush")
async def flush(request: Request) -> Response:
    body = await request.body()
    namespace = None
    if body.strip():
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise bad_request('flush takes an empty body or {"namespace": "..."}', "invalid_json") from None
        if not isinstance(document, dict) or set(document) - {"namespace"}:
            raise bad_request('flush takes an empty body or {"namespace": "..."}', "invalid_json")
        namespace = document.get("namespace")
        if namespace is not None and not valid_namespace(namespace):
            raise bad_request(f"invalid namespace {namespace!r}", "invalid_namespace")
    rt = runtime(request)
    if rt.semantic is not None:
        await rt.semantic.clear(namespace)
    return json_response({"deleted": await rt.chain.clear(namespace)})


async def limited_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


# An admin document carries a request and its answer, each up to server.max_body_bytes.
SEED_FIELDS = frozenset(("request", "response", "ttl_s"))


@admin.put("/entries")
async def put_entry(request: Request) -> Response:
    pipeline = runtime(request).pipeline
    body = await limited_body(request, 2 * pipeline.max_body)
    document = await admin_document(body, SEED_FIELDS, frozenset(("request", "response")))
    call = await open_described(pipeline, described(document["request"], pipeline))
    seeded = await seed(pipeline, call, document["response"], document.get("ttl_s"))
    return json_response(
        {"key": call.key, "keys": seeded.keys, "stored": True, "ttl_s": seeded.ttl_s, "semantic": seeded.semantic}
    )


@admin.post("/explain")
async def explain_request(request: Request) -> Response:
    pipeline = runtime(request).pipeline
    body = await limited_body(request, 2 * pipeline.max_body)
    document = await admin_document(body, frozenset(("request",)), frozenset(("request",)))
    return json_response(await explain(pipeline, described(document["request"], pipeline)))


@admin.post("/invalidate")
async def invalidate(request: Request) -> Response:
    """Every entry carrying any of the tags is gone, in every tier and process."""
    shape = f'invalidate takes {{"tags": ["...", ...]}}: 1 to {MAX_INVALIDATED_TAGS} tags'
    try:
        document = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise bad_request(shape, "invalid_json") from None
    tags = document.get("tags") if isinstance(document, dict) and set(document) == {"tags"} else None
    if not isinstance(tags, list) or not 0 < len(tags) <= MAX_INVALIDATED_TAGS:
        raise bad_request(shape, "invalid_json")
    for tag in tags:
        if not valid_tag(tag):
            raise bad_request(f"invalid tag {str(tag)[:100]!r}: {TAG_CHARACTERS}", "invalid_tag")
    unique = tuple(dict.fromkeys(tags))
    deleted = await runtime(request).chain.invalidate_tags(unique)
    return json_response({"deleted": deleted, "invalidated": list(unique)})


router.include_router(admin)
