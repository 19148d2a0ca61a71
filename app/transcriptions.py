"""Audio transcriptions: multipart in, any content type out, keyed over the file's bytes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from app.asgi import Receive, Scope, Send, offload
from app.errors import bad_request
from app.multipart import CONTROL_FIELD, Form, build_form, form_of

if TYPE_CHECKING:
    from app.proxy import Incoming, Proxy


def _body_control(form: Form) -> Any:
    control_parts = [p for p in form.parts if p.name == CONTROL_FIELD]
    if not control_parts:
        return None
    try:
        return orjson.loads(bytes(control_parts[-1].data))
    except orjson.JSONDecodeError:
        raise bad_request("the 'cache' form field must hold a JSON object", "invalid_cache_control") from None


async def handle_transcription(
    proxy: Proxy, call_type: str, scope: Scope, incoming: Incoming, body: bytes, receive: Receive, send: Send
) -> None:
    form = await offload(len(body), form_of, body, incoming.content_type or b"", proxy.max_form_parts)
    body_control = _body_control(form)
    params = form.params()
    model = params.get("model")
    call = proxy.begin(call_type, scope, incoming, model, body_control)
    rename = proxy.upstream_model(model)
    upstream_parts = form.without(CONTROL_FIELD)
    if rename is not None:
        for part in upstream_parts:
            if part.name == "model" and part.filename is None:
                part.data = bytearray(rename.encode())
    call.body = body
    if len(upstream_parts) != len(form.parts) or rename is not None:
        call.body, call.body_type = build_form(upstream_parts)
    # A streamed transcription is a different event format; it is forwarded, not cached.
    streamed = (form.text("stream") or "").strip().lower() == "true"
    if streamed or not proxy.cacheable(call):
        call.stream = streamed
        await proxy.forward(call, receive, send, "bypass", None)
        return
    call.key = await offload(len(body), proxy.key_for, call, params)
    await proxy.serve_cacheable(call, receive, send)
