"""Transcriptions: multipart, keyed over the file's bytes and every form field."""

from __future__ import annotations

import io

AUDIO = b"RIFF" + bytes(range(256)) * 40


def transcribe(client, data: bytes = AUDIO, **kwargs):
    kwargs.setdefault("model", "whisper-1")
    return client.audio.transcriptions.with_raw_response.create(file=("clip.wav", io.BytesIO(data)), **kwargs)


def test_sdk_transcription_hit(serve, fake):
    client = serve().client()
    first = transcribe(client)
    second = transcribe(client)
    assert second.headers["x-cache-status"] == "hit"
    assert second.parse().text == first.parse().text
    assert fake.stats()["calls"]["transcriptions"] == 1


def test_different_bytes_or_fields_miss(serve, fake):
    client = serve().client()
    transcribe(client)
    assert transcribe(client, AUDIO + b"\x00").headers["x-cache-status"] == "miss"
    assert transcribe(client, language="fr").headers["x-cache-status"] == "miss"
    assert transcribe(client, language="fr").headers["x-cache-status"] == "hit"


def test_text_format_keeps_its_content_type(serve, fake):
    client = serve().client()
    first = transcribe(client, response_format="text")
    second = transcribe(client, response_format="text")
    assert second.headers["x-cache-status"] == "hit"
    assert second.headers["content-type"].startswith("text/plain")
    assert second.http_response.content == first.http_response.content


async def test_cache_form_field_is_control_and_removed(asgi, fake):
    client = await asgi()
    files = {"file": ("a.wav", AUDIO, "audio/wav")}
    data = {"model": "whisper-1", "cache": '{"namespace": "audio"}'}
    response = await client.post("/v1/audio/transcriptions", files=files, data=data)
    assert response.status_code == 200
    assert response.headers["x-cache-key"].startswith("audio/")
    forwarded = fake.stats()["requests"][-1]
    assert "cache" not in forwarded["form"]
    assert forwarded["form"]["model"] == "whisper-1"
    assert forwarded["file_sha256"] is not None
    again = await client.post("/v1/audio/transcriptions", files=files, data=data)
    assert again.headers["x-cache-status"] == "hit"


async def test_bad_cache_form_field_is_400(asgi, fake):
    client = await asgi()
    files = {"file": ("a.wav", AUDIO, "audio/wav")}
    response = await client.post("/v1/audio/transcriptions", files=files, data={"model": "w", "cache": "{nope"})
    assert response.status_code == 400
