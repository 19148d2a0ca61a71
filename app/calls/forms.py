"""A call type whose requests are multipart forms: keyed over the form's exact fields and
each file's bytes (`app/multipart.py`); the `cache` field holds the controls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from app.asgi import OFFLOAD_BYTES, offload
from app.calls.base import Call, Handler
from app.errors import bad_request
from app.multipart import CONTROL_FIELD, Form, build_form, form_of

if TYPE_CHECKING:
    from app.pipeline import Pipeline
    from app.request import Request


def body_control(form: Form) -> Any:
    control_parts = [p for p in form.parts if p.name == CONTROL_FIELD]
    if not control_parts:
        return None
    try:
        return orjson.loads(bytes(control_parts[-1].data))
    except orjson.JSONDecodeError:
        raise bad_request("the 'cache' form field must hold a JSON object", "invalid_cache_control") from None


class FormHandler(Handler):
    async def open(self, pipeline: Pipeline, request: Request) -> Call:
        body = request.body
        parse = (form_of, body, request.head.content_type or b"", pipeline.max_form_parts)
        form = parse[0](*parse[1:]) if len(body) < OFFLOAD_BYTES else await offload(*parse)
        params = form.params()
        model = params.get("model")
        call = pipeline.begin(self, request, model, body_control(form))
        rename = pipeline.upstream_model(model)
        upstream_parts = form.without(CONTROL_FIELD)
        if rename is not None:
            for part in upstream_parts:
                if part.name == "model" and part.filename is None:
                    part.data = bytearray(rename.encode())
        call.body = body
        if len(upstream_parts) != len(form.parts) or rename is not None:
            call.body, call.body_type = build_form(upstream_parts)
        call.stream = self.streamed(form)
        if not call.stream and pipeline.cacheable(call):
            small = len(body) < OFFLOAD_BYTES
            call.key = pipeline.key_for(call, params) if small else await offload(pipeline.key_for, call, params)
        return call

    def streamed(self, form: Form) -> bool:
        """Whether the form asks for a stream: relayed, not cached (none by default)."""
        return False
