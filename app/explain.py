"""`POST /cache/explain`: why a request is (or is not) a hit.

The request is opened by its handler as the proxy opens it (`app/described.py`), with its
head asking the pipeline to keep the canonical form of every key it makes
(`Pipeline.key_for`): the key shown is the `x-cache-key` the proxy sends, and the canonical
form is the exact text whose SHA-256 is the key's digest. Credentials appear in it only
as their scope hash (`keys.credential_scope`). Each tier is then read without promoting
(`Chain.holdings`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from app.calls.base import Call
from app.described import open_described
from app.keys import material
from app.request import Request
from app.tiers.chain import Presence
from app.types import CacheKey

if TYPE_CHECKING:
    from app.pipeline import Pipeline


def uncached_reason(pipeline: Pipeline, call: Call) -> str | None:
    """Why an opened call has no key (None when it has one, or item keys)."""
    if call.key is not None or call.item_keys is not None:
        return None
    if call.call_type not in pipeline.enabled:
        return f"the call type {call.call_type} is not in cache.call_types"
    if call.control.use_cache is False:
        return "the request turns the cache off (use-cache: false)"
    if not pipeline.cacheable(call):
        policy = call.policy
        mode = "cache.mode" if policy is None or policy.mode is None else f"the mode of policy {policy.name!r}"
        return f"{mode} is default_off and the request does not ask for the cache (x-cache-use-cache: true)"
    return call.handler.uncached


async def tiers(pipeline: Pipeline, key: CacheKey) -> list[dict[str, Any]]:
    now = time.time()
    shown = []
    for holding in await pipeline.chain.holdings(key):
        entry = holding.entry
        held = entry is not None and holding.presence in (Presence.LIVE, Presence.EXPIRED)
        remaining = entry.remaining_ttl(now) if held and entry is not None else None
        shown.append(
            {
                "name": holding.name,
                "type": holding.type,
                "holds": holding.presence is Presence.LIVE,
                "state": holding.presence.value,
                "age_s": round(entry.age(now), 3) if held and entry is not None else None,
                "ttl_s": None if remaining is None else round(max(0.0, remaining), 3),
            }
        )
    return shown


async def explain(pipeline: Pipeline, request: Request) -> dict[str, Any]:
    canonicals: list[list[Any]] = []
    request.head.canonicals = canonicals
    call = await open_described(pipeline, request)
    reason = uncached_reason(pipeline, call)
    asked = call.asked
    document: dict[str, Any] = {
        "key": call.key,
        "call_type": call.call_type.value,
        "cacheable": reason is None,
        "reason": reason,
        "canonical": material(canonicals[0]).decode() if call.key is not None else None,
        "scope": pipeline.scope_of(call),
        "namespace": pipeline.namespace_of(call),
        "policy": None if call.policy is None else call.policy.name,
        "stream": call.stream,
        "store_ttl_s": pipeline.ttl(call) if pipeline.storable(call) else 0,
        "max_age_s": call.control.max_age_s,
        "tiers": await tiers(pipeline, call.key) if call.key is not None else [],
        "items": None,
        "semantic": {
            "enabled": pipeline.semantic_for(call) is not None,
            "applies": asked is not None,
            "context": None if asked is None else asked.fingerprint,
            "question": None if asked is None else asked.question.text,
        },
    }
    if call.item_keys is not None:
        document["items"] = [
            {"key": key, "canonical": material(canonical).decode(), "tiers": await tiers(pipeline, key)}
            for key, canonical in zip(call.item_keys, canonicals)
        ]
    return document
