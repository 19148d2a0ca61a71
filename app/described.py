"""A request an admin describes in JSON (`PUT /cache/entries`, `POST /cache/explain`),
made into the `Request` the server would have built from it on the wire and opened by its
handler: its key, controls, scope and semantic side come from the code that serves the
proxied request, not from a copy of it.

    {"path": "/v1/chat/completions?api-version=...", "headers": {"authorization": "..."},
     "body": {...}}                        (or "body_base64": "..." for the raw bytes)

Every part is checked here, once: a bad one is a 400 that names it. Header names are
lowercased (as an HTTP server hands them on); `content-length` is the body's own.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Any

from app.asgi import OFFLOAD_BYTES, Message, Scope, offload
from app.calls.registry import ROUTES
from app.errors import ProxyError, bad_request, too_large
from app.exact_json import dumps, parse_object
from app.request import Request
from app.types import Headers

if TYPE_CHECKING:
    from app.calls.base import Call
    from app.pipeline import Pipeline

REQUEST_FIELDS = frozenset(("path", "headers", "body", "body_base64"))
# An HTTP token (RFC 9110 §5.6.2): what a header name may be.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_PATH = re.compile(r"/[\x21-\x7e]*\Z")  # printable ASCII: what goes on the wire
MAX_HEADERS = 100
CODE = "invalid_admin_request"


def invalid(message: str) -> ProxyError:
    return bad_request(message, CODE)


def fields_of(value: Any, where: str, known: frozenset[str], shape: str) -> dict[str, Any]:
    """`value` as an object of `known` fields (the 400 says `where` and its `shape`)."""
    if not isinstance(value, dict):
        raise invalid(f"{where!r} must be an object with {shape}")
    unknown = sorted(set(value) - known)
    if unknown:
        raise invalid(f"unknown {where} field(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}")
    return value


async def admin_document(body: bytes, fields: frozenset[str], required: frozenset[str]) -> dict[str, Any]:
    """An admin route's JSON body: an object of `fields` (numbers exact, as in a request)."""
    try:
        document = parse_object(body) if len(body) < OFFLOAD_BYTES else await offload(parse_object, body)
    except ProxyError as error:
        raise invalid(f"the admin request is not a JSON object: {error.message}") from None
    unknown = sorted(set(document) - fields)
    if unknown:
        raise invalid(f"unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(fields))}")
    missing = sorted(required - set(document))
    if missing:
        raise invalid(f"missing field(s) {', '.join(map(repr, missing))}")
    return document


def body_bytes(document: dict[str, Any], where: str) -> bytes:
    """`body` (a JSON object) or `body_base64` (any bytes) of `document`, exactly one of them."""
    if ("body" in document) == ("body_base64" in document):
        raise invalid(f"{where} needs exactly one of 'body' (a JSON object) or 'body_base64'")
    if "body" in document:
        body = document["body"]
        if not isinstance(body, dict):
            raise invalid(f"{where}.body must be a JSON object (send other bytes as body_base64)")
        return dumps(body)
    encoded = document["body_base64"]
    if not isinstance(encoded, str):
        raise invalid(f"{where}.body_base64 must be a string")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{where}.body_base64 is not valid base64") from None


def _headers(given: Any, body: bytes, json_body: bool) -> Headers:
    if not isinstance(given, dict):
        raise invalid("request.headers must be an object of header names to string values")
    if len(given) > MAX_HEADERS:
        raise invalid(f"request.headers holds more than {MAX_HEADERS} headers")
    headers: Headers = []
    seen: set[bytes] = set()
    for name, value in given.items():
        if not _HEADER_NAME.match(name):
            raise invalid(f"request header name {name[:100]!r} is not an HTTP header name")
        if not isinstance(value, str):
            raise invalid(f"request header {name!r} must be a string, not {type(value).__name__}")
        try:
            raw = value.encode("latin-1")
        except UnicodeEncodeError:
            raise invalid(f"request header {name!r} holds characters an HTTP header cannot") from None
        if any(c in raw for c in b"\r\n\0"):
            raise invalid(f"request header {name!r} holds a line break or NUL")
        lowered = name.lower().encode()
        if lowered in seen:
            raise invalid(f"request header {name!r} is given more than once")
        seen.add(lowered)
        if lowered != b"content-length":
            headers.append((lowered, raw.strip()))
    if json_body and b"content-type" not in seen:
        headers.append((b"content-type", b"application/json"))
    headers.append((b"content-length", str(len(body)).encode()))
    return headers


async def _no_client() -> Message:
    return {"type": "http.disconnect"}  # a described request is opened, never served


def described(document: Any, pipeline: Pipeline) -> Request:
    """The request `document` describes, as the server would have read it."""
    max_body = pipeline.max_body
    document = fields_of(document, "request", REQUEST_FIELDS, "'path', 'headers' and 'body' (or 'body_base64')")
    path = document.get("path")
    if not isinstance(path, str) or not _PATH.match(path):
        raise invalid("request.path must be a path such as /v1/chat/completions (printable ASCII)")
    route, _, query = path.partition("?")
    if route not in ROUTES:
        raise invalid(f"{route[:200]!r} is not a cached route; cached: {', '.join(sorted(ROUTES))}")
    body = body_bytes(document, "request")
    if len(body) > max_body:
        raise too_large(max_body)
    headers = _headers(document.get("headers", {}), body, "body" in document)
    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": route,
        "raw_path": route.encode(),
        "query_string": query.encode(),
        "headers": headers,
    }
    return Request(scope, _no_client, pipeline.head_of(scope), body)


async def open_described(pipeline: Pipeline, request: Request) -> Call:
    """The call the proxy would make of `request`: parsed and keyed by its handler."""
    return await ROUTES[request.path].open(pipeline, request)
