"""Image generation (JSON), edits and variations (multipart, keyed over the images'
bytes). An answer whose items carry a `url` lives at most 50 minutes: the provider's
links expire after an hour, and a cached link must still work when served."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.answers import has_items
from app.calls.base import Call, JsonHandler
from app.calls.forms import FormHandler
from app.coalesce import Outcome
from app.codec import Entry
from app.types import CacheKey, CallType

if TYPE_CHECKING:
    from app.pipeline import Pipeline
    from app.request import Request

URL_TTL_S = 50 * 60


class Images(JsonHandler, FormHandler):
    call_type = CallType.IMAGES
    paths = ("/v1/images/generations", "/v1/images/edits", "/v1/images/variations")

    async def open(self, pipeline: Pipeline, request: Request) -> Call:
        if request.path.endswith("/generations"):
            return await JsonHandler.open(self, pipeline, request)
        return await FormHandler.open(self, pipeline, request)

    def complete(self, content_type: str, document: dict[str, Any] | None) -> bool:
        return has_items(document, "data", "url", str) or has_items(document, "data", "b64_json", str)

    def entries(self, call: Call, outcome: Outcome, body: bytes, ttl_s: float | None) -> dict[CacheKey, Entry]:
        data = (outcome.completion or {}).get("data") or ()
        if any("url" in item for item in data):
            ttl_s = URL_TTL_S if ttl_s is None else min(ttl_s, URL_TTL_S)
        return super().entries(call, outcome, body, ttl_s)
