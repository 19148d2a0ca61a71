"""Seeding (`PUT /cache/entries`): an admin stores a known answer for a request, so the
next identical request is a hit.

The request is opened by its handler like a proxied one (`app/described.py`), so the
entry lands under the key that request gets; the answer is judged and stored the way an
upstream's answer is (`handler.complete`, `handler.entries`): only a whole answer of the
call type, an event stream assembled into one, an embeddings batch item by item (each
item its own entry, as a proxied batch stores it). A chat or text completion is also
indexed for the semantic cache when that is on, so its paraphrases hit it too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.calls.base import Call, Handler
from app.calls.embeddings import MissingItems
from app.coalesce import Outcome, json_object
from app.described import body_bytes, fields_of, invalid
from app.exact_json import dumps
from app.explain import uncached_reason
from app.types import MAX_TTL_S, CacheKey

if TYPE_CHECKING:
    from app.pipeline import Pipeline

log = logging.getLogger("llmcache.seeding")
RESPONSE_FIELDS = frozenset(("body", "body_base64", "content_type"))
EVENT_STREAM = "text/event-stream"
# What a Content-Type header can carry back on a hit: printable ASCII, at most 255 characters.
_MEDIA_TYPE = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}\Z")


@dataclass(slots=True, frozen=True)
class Seeded:
    keys: list[CacheKey]
    ttl_s: float | None
    semantic: bool  # indexed for the semantic cache too (a chat or text completion, when it is on)


def ttl_of(pipeline: Pipeline, call: Call, given: Any) -> float | None:
    """The TTL a miss of this request would be stored with, `ttl_s` standing for its TTL
    control if given (a policy's maximum still applies)."""
    if given is None:
        return pipeline.ttl(call)
    if isinstance(given, bool) or not isinstance(given, (int, float)) or not math.isfinite(given):
        raise invalid("ttl_s must be a number of seconds")
    if not 0 < given <= MAX_TTL_S:
        raise invalid(f"ttl_s must be more than 0 and at most {MAX_TTL_S}")
    call.control.ttl_s = float(given)
    return pipeline.ttl(call)


def answer_of(handler: Handler, response: Any) -> Outcome:
    """The seeded response as an upstream outcome, if it is a whole answer of the call type."""
    response = fields_of(response, "response", RESPONSE_FIELDS, "'body' (or 'body_base64') and 'content_type'")
    body = body_bytes(response, "response")
    content_type = response.get("content_type", "application/json")
    if not isinstance(content_type, str) or not _MEDIA_TYPE.match(content_type):
        raise invalid("response.content_type must be a media type such as application/json (printable ASCII)")
    if handler.relays:  # stored as the bytes they are (speech)
        return Outcome(
            200, [], body, None, complete=handler.whole_stream(body, content_type)[1], content_type=content_type
        )
    if content_type.startswith(EVENT_STREAM) and handler.streams:  # judged as the pipeline judges a stream
        answer, whole = handler.whole_stream(body, content_type)
        if answer is None:
            return Outcome(200, [], body, content_type=content_type)
        return Outcome(200, [], dumps(answer), answer, complete=True)  # stored as the pipeline stores a stream
    document = json_object(body, content_type)
    whole = handler.complete(content_type, document)
    return Outcome(200, [], body, document if whole else None, complete=whole, content_type=content_type)


async def seed(pipeline: Pipeline, call: Call, response: Any, ttl_s: Any) -> Seeded:
    reason = uncached_reason(pipeline, call)
    if reason is not None:
        raise invalid(f"this request is not cached, so it cannot be seeded: {reason}")
    if call.control.no_store:
        raise invalid("this request says no-store, so it cannot be seeded")
    # A batch is stored as the proxy stores one: each item its own entry.
    handler = call.handler if call.item_keys is None else MissingItems(call.item_keys)
    outcome = answer_of(handler, response)
    if not outcome.complete:
        what = f"an answer to all {len(call.item_keys)} inputs" if call.item_keys else "a whole answer"
        raise invalid(f"response is not {what} of a {call.call_type} call, so it would never be stored")
    ttl = ttl_of(pipeline, call, ttl_s)
    if ttl == 0:
        raise invalid("the TTL for this request is 0: nothing is stored (give ttl_s)")
    entries = handler.entries(call, outcome, outcome.body, ttl)
    # Other processes of the fleet drop an older copy they hold in memory, and read this one.
    await asyncio.gather(*(pipeline.chain.fleet.announce({"op": "delete", "key": key}) for key in entries))
    await pipeline.put(call, entries, durable=True)
    semantic = False
    semantic_cache = pipeline.semantic_for(call)
    if call.asked is not None and semantic_cache is not None and call.key is not None:
        semantic = await semantic_cache.learn(call.asked, call.key, ttl, call.head.authorization)
    log.info("seeded %d entr%s for a %s request", len(entries), "y" if len(entries) == 1 else "ies", call.call_type)
    return Seeded(list(entries), ttl, semantic)
