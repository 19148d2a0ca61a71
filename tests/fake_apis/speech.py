"""OpenAI's text to speech (``POST /v1/audio/speech``) for the fake upstream.

The request is JSON: ``model``, ``input`` (1 to 4096 characters), ``voice`` (a name or
``{"id": ...}``), and optionally ``instructions``, ``response_format`` (mp3 by default,
opus, aac, flac, wav, pcm), ``speed`` (0.25 to 4.0) and ``stream_format`` ("audio" by
default, or "sse", which tts-1 and tts-1-hd refuse like OpenAI does).

The audio is deterministic bytes, a function of all those fields: a few KB (4 KB plus
64 bytes per input character, at most 64 KB, divided by ``speed``, at least 2 KB) of
pseudo-random 16-bit samples behind the format's usual header (a real RIFF/WAVE header
for wav, 24 kHz mono; none for pcm; the format's magic bytes for the others). It is sent
in pieces of ``CHUNK`` bytes with chunked transfer encoding and no content-length, with
the format's content type (``CONTENT_TYPES``), so ``x-fake-chunk-delay-ms`` spaces the
pieces and ``x-fake-cut-after: N`` sends N of them and drops the connection.

With ``stream_format: "sse"`` the answer is text/event-stream: one
``data: {"type": "speech.audio.delta", "audio": <base64 of a piece>}`` per piece, then
``data: {"type": "speech.audio.done", "usage": {input_tokens, output_tokens,
total_tokens}}`` (no ``[DONE]``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import struct
from typing import Any

import orjson

from tests.fake_apis.common import SSE, ApiError, Full, Stream, json_reply, require_model, word_count

CHUNK = 1024
SAMPLE_RATE = 24_000
MAX_INPUT = 4096
CONTENT_TYPES = {
    "mp3": b"audio/mpeg",
    "opus": b"audio/opus",
    "aac": b"audio/aac",
    "flac": b"audio/flac",
    "wav": b"audio/wav",
    "pcm": b"audio/pcm",
}
_MAGIC = {
    "mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\xc4",
    "opus": b"OggS\x00\x02" + bytes(20) + b"OpusHead\x01\x01",
    "aac": b"\xff\xf1\x50\x80",
    "flac": b"fLaC\x00\x00\x00\x22",
    "pcm": b"",
}
_NO_SSE_MODELS = ("tts-1", "tts-1-hd")
_FAILURE = {"message": "The server had an error while processing your request.", "type": "server_error", "code": None}


def reply(body: dict[str, Any]) -> Stream:
    """The audio (or its SSE events) for one call (the answer has no id, so x-fake-id has no use)."""
    model = require_model(body)
    text = body.get("input")
    if not isinstance(text, str) or not text:
        raise ApiError(400, "Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    if len(text) > MAX_INPUT:
        message = f"Invalid 'input': string too long. Expected a string with maximum length {MAX_INPUT}."
        raise ApiError(400, message, param="input", code="string_above_max_length")
    voice = _voice(body.get("voice"))
    fmt = body.get("response_format") or "mp3"
    if fmt not in CONTENT_TYPES:
        message = f"Invalid 'response_format': {fmt!r}; expected one of {', '.join(CONTENT_TYPES)}."
        raise ApiError(400, message, param="response_format", code="invalid_value")
    speed = _speed(body.get("speed"))
    instructions = body.get("instructions") or ""
    if not isinstance(instructions, str):
        raise ApiError(400, "Invalid 'instructions': expected a string.", param="instructions")
    stream_format = body.get("stream_format") or "audio"
    if stream_format not in ("audio", "sse"):
        message = f"Invalid 'stream_format': {stream_format!r}; expected 'audio' or 'sse'."
        raise ApiError(400, message, param="stream_format", code="invalid_value")
    if stream_format == "sse" and model in _NO_SSE_MODELS:
        message = f"stream_format 'sse' is not supported for {model}."
        raise ApiError(400, message, param="stream_format", code="unsupported_value")
    audio = audio_bytes(model, text, voice, fmt, speed, instructions)
    pieces = [audio[start : start + CHUNK] for start in range(0, len(audio), CHUNK)]
    if stream_format == "audio":
        return Stream(pieces, CONTENT_TYPES[fmt])
    events = [_data({"type": "speech.audio.delta", "audio": base64.b64encode(p).decode()}) for p in pieces]
    input_tokens = word_count(text) + word_count(instructions)
    output_tokens = len(audio) // 64
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}
    events.append(_data({"type": "speech.audio.done", "usage": usage}))
    return Stream(events)


def bad_reply(mode: str, answer: Full | Stream) -> Full | Stream | None:
    """This API's form of ``x-fake-bad`` "shape" and "sse-error" (None: the generic one)."""
    if not isinstance(answer, Stream):
        return None  # an error reply: nothing of ours to spoil
    sse = answer.content_type == SSE
    if mode == "shape":
        # JSON where audio belongs: the done event (sse), or a description of the audio.
        if sse:
            return json_reply(orjson.loads(answer.events[-1][6:]))
        kind = answer.content_type.decode()
        return json_reply({"object": "audio.speech", "content_type": kind, "bytes": sum(map(len, answer.events))})
    if mode == "sse-error":
        head = answer.events[:2] if sse else []  # audio bytes do not belong in an event stream
        return Stream([*head, b"event: error\ndata: " + orjson.dumps({"type": "error", "error": _FAILURE}) + b"\n\n"])
    return None


@functools.lru_cache(maxsize=1024)
def audio_bytes(model: str, text: str, voice: str, fmt: str, speed: float, instructions: str) -> bytes:
    """The whole audio answer of a call with these fields."""
    seed = hashlib.sha256(orjson.dumps([model, text, voice, fmt, speed, instructions])).digest()
    size = max(2048, int(min(4096 + 64 * len(text), 65536) / speed)) & ~1  # whole 16-bit samples
    samples = hashlib.shake_256(seed).digest(size)
    if fmt == "wav":
        header = struct.pack(
            "<4sI4s4sIHHIIHH4sI",
            *(b"RIFF", 36 + size, b"WAVE", b"fmt ", 16, 1, 1, SAMPLE_RATE, 2 * SAMPLE_RATE, 2, 16, b"data", size),
        )
        return header + samples
    return _MAGIC[fmt] + samples


def _voice(raw: Any) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"]:
        return "id:" + str(raw["id"])
    if isinstance(raw, str) and raw:
        return raw
    raise ApiError(400, "Missing required parameter: 'voice'.", param="voice", code="missing_required_parameter")


def _speed(raw: Any) -> float:
    if raw is None:
        return 1.0
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0.25 <= raw <= 4.0:
        raise ApiError(400, "Invalid 'speed': expected a number in [0.25, 4.0].", param="speed", code="invalid_value")
    return float(raw)


def _data(document: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(document) + b"\n\n"
