"""Encryption at rest through a running proxy: what lands on disk and in Redis, rotation,
wrong keys, tampered and transplanted values.

Every answer the fake upstream gives echoes the question, so a unique marker in the
question is a marker in the stored answer. Each "no plaintext" test runs a plaintext
control beside it: the same flow without encryption must find the markers, so the grep
is shown to look where the answers are.
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from app.tiers import Tier
from tests.conftest import API_KEY, metric_value
from tests.object_stores import ObjectStore, unique_path
from tests.test_object_tiers import STORE_FIXTURES, make_tier

AUTH = {"authorization": f"Bearer {API_KEY}"}
KEY_A = base64.b64encode(os.urandom(32)).decode()
KEY_B = os.urandom(32).hex()
KEY_C = base64.urlsafe_b64encode(os.urandom(32)).decode()


def chat(text: str, **extra: object) -> dict:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra}


def post(proxy, document: dict) -> httpx.Response:
    response = httpx.post(proxy.base_url + "/chat/completions", json=document, headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return response


def streamed(proxy, text: str) -> tuple[str, str]:
    """(x-cache-status, the answer's text joined from its deltas) of a streamed chat."""
    with httpx.stream(
        "POST", proxy.base_url + "/chat/completions", json=chat(text, stream=True), headers=AUTH, timeout=10
    ) as response:
        assert response.status_code == 200
        body = response.read().decode()
    events = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    answer = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return response.headers["x-cache-status"], answer


def disk_bytes(directory: Path) -> list[bytes]:
    return [path.read_bytes() for path in directory.rglob("*") if path.is_file()]


def redis_bytes(url: str) -> list[bytes]:
    """Every value in the database: strings whole, hashes field by field."""
    values = []
    with redis.Redis.from_url(url) as client:
        for name in client.scan_iter(count=1000):
            kind = client.type(name)
            if kind == b"string":
                values.append(client.get(name) or b"")
            elif kind == b"hash":
                values.extend(client.hgetall(name).values())
    return values


def holding(stored: list[bytes], markers: list[str]) -> list[str]:
    return [m for m in markers if any(m.encode() in value for value in stored)]


def store_answers(proxy) -> tuple[list[str], bytes, str]:
    """A chat answer and a streamed one, through HTTP; (markers, chat body, stream text)."""
    markers = [f"quokka-{uuid.uuid4().hex}", f"axolotl-{uuid.uuid4().hex}"]
    first = post(proxy, chat(markers[0]))
    assert first.headers["x-cache-status"] == "miss"
    status, answer = streamed(proxy, markers[1])
    assert status == "miss" and markers[1] in answer
    proxy.drain()
    return markers, first.content, answer


def cache_keys(proxy, markers: list[str]) -> list[str]:
    """The keys of the markers' entries (a no-store request: it writes nothing)."""
    return [
        httpx.post(
            proxy.base_url + "/chat/completions", json=chat(m), headers={**AUTH, "x-cache-no-store": "1"}
        ).headers["x-cache-key"]
        for m in markers
    ]


def assert_hits(proxy, markers: list[str], body: bytes, answer: str) -> None:
    hit = post(proxy, chat(markers[0]))
    assert hit.headers["x-cache-status"] == "hit"
    assert hit.content == body
    assert streamed(proxy, markers[1]) == ("hit", answer)


def encryption(*keys: str) -> dict:
    return {"encryption": {"key": keys[0]} if len(keys) == 1 else {"keys": list(keys)}}


def decrypt_failures(proxy, **labels: str) -> float:
    return metric_value(httpx.get(proxy.root + "/metrics").text, "llmcache_decrypt_failures_total", **labels)


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plaintext-control"])
def test_disk_tier_holds_no_plaintext_answer(serve, fake, tmp_path, encrypted):
    directory = tmp_path / "disk"
    cache = {"tiers": [{"type": "local"}, {"type": "disk", "path": str(directory)}]}
    if encrypted:
        cache |= encryption(KEY_A)
    first = serve(cache=cache)
    markers, body, answer = store_answers(first)
    first.stop()
    assert holding(disk_bytes(directory), markers) == ([] if encrypted else markers)
    # A new process has an empty local tier: these hits are read, and decrypted, from disk.
    second = serve(cache=cache)
    assert_hits(second, markers, body, answer)
    assert fake.chat_calls() == 2
    assert decrypt_failures(second) == 0


@pytest.mark.redis
@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plaintext-control"])
def test_redis_holds_no_plaintext_answer(serve, fake, redis_standalone, encrypted):
    cache = {
        "tiers": [
            {"type": "local"},
            {"type": "redis", "url": redis_standalone.url, "prefix": f"enc-{uuid.uuid4().hex[:8]}:"},
        ]
    }
    if encrypted:
        cache |= encryption(KEY_A)
    writer = serve(cache=cache)
    markers, body, answer = store_answers(writer)
    assert holding(redis_bytes(redis_standalone.url), markers) == ([] if encrypted else markers)
    assert_hits(serve(cache=cache), markers, body, answer)  # another process: from Redis
    assert fake.chat_calls() == 2


@pytest.mark.object_store
@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plaintext-control"])
@pytest.mark.parametrize("kind", sorted(STORE_FIXTURES))
def test_object_stores_hold_no_plaintext_answer(request, serve, fake, kind, encrypted):
    store: ObjectStore = request.getfixturevalue(STORE_FIXTURES[kind])
    tier_config = store.tier_config(unique_path())
    cache = {"tiers": [{"type": "local"}, tier_config]}
    if encrypted:
        cache |= encryption(KEY_A)
    writer = serve(cache=cache)
    markers, body, answer = store_answers(writer)
    keys = cache_keys(writer, markers)

    async def read_objects(tier: Tier) -> list[bytes]:
        try:
            return [value or b"" for value in await asyncio.gather(*(tier.get(k) for k in keys))]
        finally:
            await tier.close()

    stored = asyncio.run(read_objects(make_tier(tier_config)))
    assert all(stored)  # both entries are there, read straight from the store
    assert holding(stored, markers) == ([] if encrypted else markers)
    assert_hits(serve(cache=cache), markers, body, answer)  # another process: from the store


def test_key_rotation_keeps_old_entries_and_writes_with_the_first_key(serve, fake, tmp_path):
    tiers = {"tiers": [{"type": "local"}, {"type": "disk", "path": str(tmp_path / "disk")}]}
    under_a = serve(cache=tiers | encryption(KEY_A))
    old = post(under_a, chat("written under key A"))
    under_a.drain()
    under_a.stop()

    rotated = serve(cache=tiers | encryption(KEY_B, KEY_A))
    hit = post(rotated, chat("written under key A"))
    assert hit.headers["x-cache-status"] == "hit" and hit.content == old.content
    new = post(rotated, chat("written under key B"))
    assert new.headers["x-cache-status"] == "miss"
    rotated.drain()
    rotated.stop()
    assert fake.chat_calls() == 2

    only_b = serve(cache=tiers | encryption(KEY_B))
    hit = post(only_b, chat("written under key B"))
    assert hit.headers["x-cache-status"] == "hit" and hit.content == new.content
    assert post(only_b, chat("written under key A")).headers["x-cache-status"] == "miss"
    assert fake.chat_calls() == 3
    assert decrypt_failures(only_b, tier="disk", reason="unknown_key") == 1


def test_wrong_key_is_a_miss_never_an_error(serve, fake, tmp_path):
    tiers = {"tiers": [{"type": "local"}, {"type": "disk", "path": str(tmp_path / "disk")}]}
    right = serve(cache=tiers | encryption(KEY_A))
    stored = post(right, chat("the right key"))
    right.drain()
    right.stop()
    wrong = serve(cache=tiers | encryption(KEY_C))
    for _ in range(3):
        again = post(wrong, chat("the right key"))  # 200, asserted by post
        assert again.headers["x-cache-status"] in ("miss", "hit")
    # The first read misses and its answer is rewritten under KEY_C; later ones hit it.
    assert fake.chat_calls() == 2
    assert again.content != stored.content  # a new upstream answer (new id), not the old entry
    assert decrypt_failures(wrong, tier="disk", reason="unknown_key") == 1
    # Turning encryption off reads none of it either: a miss, not a 500.
    off = serve(cache=tiers)
    assert post(off, chat("the right key")).headers["x-cache-status"] == "miss"


@pytest.mark.redis
def test_tampered_or_transplanted_values_are_misses(serve, fake, redis_standalone):
    prefix = f"enc-{uuid.uuid4().hex[:8]}:"
    cache = {"tiers": [{"type": "local"}, {"type": "redis", "url": redis_standalone.url, "prefix": prefix}]}
    cache |= encryption(KEY_A)
    writer = serve(cache=cache)
    keys = {text: post(writer, chat(text)).headers["x-cache-key"] for text in ("tampered", "victim", "donor")}
    writer.drain()
    with redis.Redis.from_url(redis_standalone.url) as client:
        value = bytearray(client.get(prefix + keys["tampered"]))
        value[-20] ^= 0x01  # one bit of ciphertext
        client.set(prefix + keys["tampered"], bytes(value), keepttl=True)
        # The donor's valid ciphertext under the victim's key: it must not be served.
        client.set(prefix + keys["victim"], client.get(prefix + keys["donor"]), keepttl=True)
    reader = serve(cache=cache)  # an empty local tier: reads go to Redis
    calls = fake.chat_calls()
    for text in ("tampered", "victim"):
        response = post(reader, chat(text))
        assert response.headers["x-cache-status"] == "miss"
        assert b"donor" not in response.content
    assert post(reader, chat("donor")).headers["x-cache-status"] == "hit"
    assert fake.chat_calls() == calls + 2
    assert decrypt_failures(reader, tier="redis", reason="invalid") == 2


@pytest.mark.redis
@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plaintext-control"])
def test_semantic_index_holds_no_plaintext_question(serve, fake, redis_standalone, encrypted):
    semantic = {
        "type": "redis",
        "redis": {"url": redis_standalone.url, "index": f"sem-{uuid.uuid4().hex[:8]}"},
        "embedding": {"local": "all-MiniLM-L6-v2"},
    }
    cache = {"tiers": [{"type": "local"}], "semantic": semantic}
    if encrypted:
        cache |= encryption(KEY_A)
    proxy = serve(cache=cache)
    marker = f"Zorblax{uuid.uuid4().hex[:6]}"
    first = post(proxy, chat(f"What is the capital city of {marker}?"))
    proxy.drain()
    assert holding(redis_bytes(redis_standalone.url), [marker]) == ([] if encrypted else [marker])
    # The guard still reads the (decrypted) question: a paraphrase hits.
    second = post(proxy, chat(f"What's the capital of {marker}?"))
    assert second.headers["x-cache-status"] == "semantic-hit"
    assert second.content == first.content
