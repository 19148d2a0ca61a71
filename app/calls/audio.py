"""Audio transcriptions and translations: multipart in, JSON or plain text out, keyed over
the form's exact fields and each file's bytes."""

from __future__ import annotations

from typing import Any

from app.answers import is_text_answer
from app.calls.forms import FormHandler
from app.multipart import Form
from app.types import CallType


class Audio(FormHandler):
    uncached = "a streamed transcription is relayed, not cached"

    def complete(self, content_type: str, document: dict[str, Any] | None) -> bool:
        return is_text_answer(content_type, document)

    def streamed(self, form: Form) -> bool:
        # A streamed transcription is a different event format: relayed, not cached.
        return (form.text("stream") or "").strip().lower() == "true"


class Transcriptions(Audio):
    call_type = CallType.TRANSCRIPTIONS
    paths = ("/v1/audio/transcriptions",)


class Translations(Audio):
    call_type = CallType.TRANSLATIONS
    paths = ("/v1/audio/translations",)
