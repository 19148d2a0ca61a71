"""Text to speech: JSON in, audio bytes out. The audio is relayed to the client as it
arrives (never buffered before the first byte), stored with its content type only once
the upstream has sent all of it, and a hit returns the same bytes. `stream_format: "sse"`
(audio in `speech.audio.delta` events) is its own entry, stored once `speech.audio.done`
has come."""

from __future__ import annotations

from typing import Any

from app.calls.base import Call, JsonHandler
from app.streaming.sse import named_events
from app.types import CallType

AUDIO_TYPES = ("audio/", "application/octet-stream")


class Speech(JsonHandler):
    call_type = CallType.SPEECH
    paths = ("/v1/audio/speech",)
    relays = True

    def prepare(self, call: Call, payload: dict[str, Any]) -> None:
        call.stream = True  # relayed live, whatever the format

    def complete(self, content_type: str, document: dict[str, Any] | None) -> bool:
        return content_type.startswith(AUDIO_TYPES)

    def assemble(self, raw: bytes) -> dict[str, Any] | None:
        """For the SSE format: whether the stream finished (None if it did not)."""
        kinds = [event.get("type", name) for name, event in named_events(raw)]
        if "error" in kinds or "speech.audio.done" not in kinds:
            return None
        return {"finished": True}
