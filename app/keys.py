"""Cache keys: the only place one is built (CONTRACT §5).

A key is the SHA-256 of a canonical JSON array — call type, model (or its caching
group), credential scope, namespace, and every other body parameter with keys sorted at
every depth — so neither key order nor `stream` changes it and any other parameter does.
A namespaced key is prefixed `namespace/` so tiers can flush one namespace by prefix.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from app.tiers.base import CacheKey

# Transport and caching options: the same answer whatever their value. The model is
# keyed separately, as its caching group.
NON_KEY_PARAMS = frozenset(("cache", "stream", "stream_options", "model"))
ANONYMOUS = "anonymous"


def credential_scope(authorization: str | None, api_key: str | None = None) -> str:
    """A one-way tag of the caller's credential; the secret itself is never stored."""
    credential = authorization or api_key
    if not credential:
        return ANONYMOUS
    return hashlib.sha256(credential.encode()).hexdigest()[:32]


def _normalize(value: Any) -> Any:
    # 1 and 1.0 are the same JSON number; clients differ in which they send.
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def cache_key(
    call_type: str,
    model: Any,
    params: dict[str, Any],
    scope: str | None,
    namespace: str | None,
) -> CacheKey:
    """`params` is the request body; NON_KEY_PARAMS are dropped here."""
    canonical = {k: _normalize(v) for k, v in params.items() if k not in NON_KEY_PARAMS}
    material = orjson.dumps(
        [call_type, model, scope, namespace, canonical], option=orjson.OPT_SORT_KEYS
    )
    digest = hashlib.sha256(material).hexdigest()
    return f"{namespace}/{digest}" if namespace else digest


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
