"""Audio transcriptions: multipart in, any content type out, keyed over the file's bytes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from app import keys
from app.asgi import Receive, Scope, Send
from app.errors import bad_request
from app.multipart import Part, boundary_of, build_form, parse_form

if TYPE_CHECKING:
    from app.proxy import Incoming, Proxy

CONTROL_FIELD = "cache"


def form_params(parts: list[Part]) -> dict[str, Any]:
    """Key material of a form: every field, and each file by its bytes' digest.

    A repeated field (e.g. `timestamp_granularities[]`) keeps all values in order.
    """
    params: dict[str, list[Any]] = {}
    for part in parts:
        if part.name == CONTROL_FIELD:
            continue
        value: Any
        if part.filename is not None:
            value = {"sha256": keys.file_digest(bytes(part.data))}
        else:
            value = part.data.decode("utf-8", "replace")
        params.setdefault(part.name, []).append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in params.items()}


async def handle_transcription(
    proxy: Proxy, call_type: str, scope: Scope, incoming: Incoming, body: bytes, receive: Receive, send: Send
) -> None:
    boundary = boundary_of(incoming.content_type or b"")
    if boundary is None:
        raise bad_request("transcriptions take multipart/form-data with a boundary", "invalid_multipart")
    parts = parse_form(body, boundary)
    control_parts = [p for p in parts if p.name == CONTROL_FIELD]
    body_control: Any = None
    if control_parts:
        try:
            body_control = orjson.loads(bytes(control_parts[-1].data))
        except orjson.JSONDecodeError:
            raise bad_request("the 'cache' form field must hold a JSON object", "invalid_cache_control") from None
    params = form_params(parts)
    model = params.get("model")
    call = proxy.begin(call_type, scope, incoming, model, body_control)
    rename = proxy.upstream_model(model)
    upstream_parts = [p for p in parts if p.name != CONTROL_FIELD]
    if rename is not None:
        for part in upstream_parts:
            if part.name == "model" and part.filename is None:
                part.data = bytearray(rename.encode())
    call.body = body
    if control_parts or rename is not None:
        call.body, call.body_type = build_form(upstream_parts)
    # A streamed transcription is a different event format; it is forwarded, not cached.
    streamed = str(params.get("stream", "")).lower() == "true"
    if streamed or not proxy.cacheable(call):
        call.stream = streamed
        await proxy.forward(call, receive, send, "bypass", None)
        return
    call.key = proxy.key_for(call, {k: v for k, v in params.items() if k != "model"})
    await proxy.serve_cacheable(call, receive, send)
