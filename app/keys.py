"""Cache keys: the only place one is built (CONTRACT §5).

A key is the SHA-256 of a canonical JSON array — call type, model (or its caching
group), credential scope, namespace, query string, and every other body parameter with
keys sorted at every depth — so neither key order nor `stream` changes it and any other
parameter does. A namespaced key is prefixed `namespace/` so tiers can flush one
namespace by prefix.

Why different requests never share a key: JSON is unambiguous and orjson writes one
spelling per tree (sorted keys, one escape per character), so the array's bytes differ
whenever a part differs — provided every part is a faithful value of the request. The
parts are made so: numbers keep their exact value (`exact_json`), the model is a body
parameter like any other (present, absent or null) unless a caching group stands in for
it, form fields keep their exact bytes, and the array has a fixed length, so no part can
stand in for another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from app.exact_json import dumps, parse_object
from app.types import CacheKey

# Transport and caching options: the same answer whatever their value.
NON_KEY_PARAMS = frozenset(("cache", "stream", "stream_options"))
ANONYMOUS = "anonymous"
# A process sees few distinct credentials, each on many requests: their scopes are kept
# (bounded) so a hit does not hash its credential again.
MAX_SCOPES = 1024
_SCOPES: dict[tuple[bytes, bytes], str] = {}
# Every header an upstream authenticates (or bills) a caller by: OpenAI and Azure OpenAI
# (`authorization`, `api-key`, organization and project), Anthropic (`x-api-key`).
CREDENTIAL_HEADERS = (b"authorization", b"api-key", b"x-api-key", b"openai-organization", b"openai-project")
# A credential sent twice is refused: which copy an upstream reads is its own choice.
SINGLE_HEADERS = frozenset((b"authorization", b"api-key", b"x-api-key"))


def credential_scope(credentials: Sequence[tuple[bytes, bytes]]) -> str:
    """A one-way tag of the caller's credential headers: the secrets never reach a key, a
    store or a log.

    `credentials` holds (name, value) pairs of CREDENTIAL_HEADERS, each name at most once.
    """
    if len(credentials) == 1:  # the usual case: one header, its scope remembered
        only = credentials[0]
        scope = _SCOPES.get(only)
        if scope is None:
            scope = _scope([only])
            if len(_SCOPES) >= MAX_SCOPES:
                _SCOPES.clear()
            _SCOPES[only] = scope
        return scope
    return _scope(credentials)


def _scope(credentials: Sequence[tuple[bytes, bytes]]) -> str:
    present = sorted((name, value) for name, value in credentials if value.strip())
    if not present:
        return ANONYMOUS
    material = b"\n".join(name + b":" + value for name, value in present)
    return hashlib.sha256(material).hexdigest()[:32]


def canonical(
    call_type: str,
    group: str | None,
    params: dict[str, Any],
    scope: str | None,
    namespace: str | None,
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
) -> list[Any]:
    """What a key is the hash of: `params` is the request body (numbers exact);
    NON_KEY_PARAMS are dropped here, and the model too when `group` (its caching group's
    name) stands in for it. `headers`: the request headers that change the answer, as sent
    (name, value), in order."""
    if group is None:
        body = {k: v for k, v in params.items() if k not in NON_KEY_PARAMS}
    else:
        body = {k: v for k, v in params.items() if k not in NON_KEY_PARAMS and k != "model"}
    return [call_type, group, scope, namespace, query, headers or (), body]


def material(canonical: list[Any]) -> bytes:
    """The canonical form's one spelling: the bytes a key's digest is the SHA-256 of."""
    return dumps(canonical, orjson.OPT_SORT_KEYS)


def key_of(canonical: list[Any]) -> CacheKey:
    digest = hashlib.sha256(material(canonical)).hexdigest()
    namespace = canonical[3]
    return f"{namespace}/{digest}" if namespace else digest


def cache_key(
    call_type: str,
    group: str | None,
    params: dict[str, Any],
    scope: str | None,
    namespace: str | None,
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
) -> CacheKey:
    """The key of a request's parts (see `canonical`)."""
    return key_of(canonical(call_type, group, params, scope, namespace, query, headers))


def key_of_json(
    call_type: str, body: bytes, *, scope: str | None = None, namespace: str | None = None, query: str = ""
) -> CacheKey:
    """The key the proxy gives a JSON request body (no routing: the model as sent)."""
    return cache_key(call_type, None, parse_object(body), scope, namespace, query)


def key_of_form(
    call_type: str,
    body: bytes,
    content_type: bytes,
    *,
    scope: str | None = None,
    namespace: str | None = None,
    query: str = "",
) -> CacheKey:
    """The key the proxy gives a multipart/form-data request body (no routing)."""
    from app.multipart import form_of

    return cache_key(call_type, None, form_of(body, content_type).params(), scope, namespace, query)
