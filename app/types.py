"""The shapes and names that flow through every layer, defined once."""

from __future__ import annotations

import re
from enum import StrEnum

CacheKey = str
Headers = list[tuple[bytes, bytes]]

# Ten years: a longer TTL is no cache policy, and past it some stores reject the expiry.
MAX_TTL_S = 315_360_000


class CacheStatus(StrEnum):
    """The `x-cache-status` of a response on a cacheable route (CONTRACT §4)."""

    HIT = "hit"
    SEMANTIC_HIT = "semantic-hit"
    PARTIAL = "partial"
    MISS = "miss"
    COALESCED = "coalesced"
    REFRESH = "refresh"
    STALE = "stale"
    BYPASS = "bypass"


class CallType(StrEnum):
    """A cached API; `app.calls.registry` has one handler for each."""

    CHAT_COMPLETIONS = "chat_completions"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    TRANSCRIPTIONS = "transcriptions"
    TRANSLATIONS = "translations"
    RESPONSES = "responses"
    MESSAGES = "messages"
    IMAGES = "images"
    SPEECH = "speech"
    RERANK = "rerank"
    MODERATIONS = "moderations"


# A namespace is a key prefix, a header value and a path segment of object tiers: letters,
# digits, '.', '_' and '-', matched whole (a `$` would let a trailing newline through).
NAMESPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z"
_NAMESPACE = re.compile(NAMESPACE_PATTERN)
_KEY = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9._-]{0,127}/)?[0-9a-f]{64}\Z")


def valid_namespace(value: object) -> bool:
    return isinstance(value, str) and _NAMESPACE.match(value) is not None


def valid_key(value: str) -> bool:
    """A cache key as `keys.cache_key` makes them: a digest, perhaps behind a namespace."""
    return _KEY.match(value) is not None
