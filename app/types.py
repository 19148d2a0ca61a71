"""The shapes and names that flow through every layer, defined once."""

from __future__ import annotations

import re

CacheKey = str
Headers = list[tuple[bytes, bytes]]

# Ten years: a longer TTL is no cache policy, and past it some stores reject the expiry.
MAX_TTL_S = 315_360_000

# A namespace is a key prefix, a header value and a path segment of object tiers: letters,
# digits, '.', '_' and '-', matched whole (a `$` would let a trailing newline through).
NAMESPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z"
_NAMESPACE = re.compile(NAMESPACE_PATTERN)


def valid_namespace(value: object) -> bool:
    return isinstance(value, str) and _NAMESPACE.match(value) is not None


_KEY = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9._-]{0,127}/)?[0-9a-f]{64}\Z")


def valid_key(value: str) -> bool:
    """A cache key as `keys.cache_key` makes them: a digest, perhaps behind a namespace."""
    return _KEY.match(value) is not None
