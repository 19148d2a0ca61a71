"""OpenAI's audio translations (``POST /v1/audio/translations``) for the fake upstream.

Multipart like transcriptions: ``file`` (required), ``model`` (required), and optionally
``prompt``, ``response_format`` (json by default, text, srt, vtt, verbose_json) and
``temperature``. The English text is ``translation_text(file bytes, prompt)``:
"English translation <first 12 hex digits of the file's sha256>", plus " prompt=<prompt>"
when one is given. verbose_json is OpenAI's ``{"task": "translate", "language":
"english", "duration", "text", "segments"}``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from tests.fake_apis.common import ApiError, Full, Stream, json_reply, require_model

_PLAIN = b"text/plain; charset=utf-8"


def translation_text(file_bytes: bytes, prompt: str | None = None) -> str:
    text = "English translation " + hashlib.sha256(file_bytes).hexdigest()[:12]
    return f"{text} prompt={prompt}" if prompt else text


def reply(fields: dict[str, Any], file_bytes: bytes | None) -> Full:
    if file_bytes is None:
        raise ApiError(400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
    require_model(fields)
    try:
        temperature = float(fields.get("temperature") or 0.0)
    except (TypeError, ValueError):
        raise ApiError(400, "Invalid 'temperature': expected a number.", param="temperature") from None
    prompt = fields.get("prompt") or None
    if prompt is not None and not isinstance(prompt, str):
        raise ApiError(400, "Invalid 'prompt': expected a string.", param="prompt")
    text = translation_text(file_bytes, prompt)
    fmt = fields.get("response_format") or "json"
    if fmt == "json":
        return json_reply({"text": text})
    if fmt == "text":
        return Full(200, (text + "\n").encode(), _PLAIN)
    if fmt == "srt":
        return Full(200, f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n\n".encode(), _PLAIN)
    if fmt == "vtt":
        return Full(200, f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{text}\n\n".encode(), _PLAIN)
    if fmt == "verbose_json":
        return json_reply(_verbose(text, temperature))
    raise ApiError(400, f"Unsupported response_format {fmt!r}", param="response_format", code="invalid_value")


def bad_reply(mode: str, answer: Full | Stream) -> Full | None:
    """``x-fake-bad: shape`` for a JSON answer: the document without its ``text``."""
    if mode != "shape" or not isinstance(answer, Full) or not answer.body.startswith(b"{"):
        return None
    document = orjson.loads(answer.body)
    document.pop("text", None)
    return json_reply(document)


def _verbose(text: str, temperature: float) -> dict[str, Any]:
    words = text.split()
    segment = {
        "id": 0,
        "seek": 0,
        "start": 0.0,
        "end": 1.0,
        "text": text,
        "tokens": list(range(50364, 50364 + len(words))),
        "temperature": temperature,
        "avg_logprob": -0.25,
        "compression_ratio": 1.0,
        "no_speech_prob": 0.01,
    }
    return {"task": "translate", "language": "english", "duration": 1.0, "text": text, "segments": [segment]}
