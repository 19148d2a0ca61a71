"""Tags and invalidation by tag, through real proxies: one process, two sharing Redis,
restarts, the fast path, embeddings' per-input entries and hostile input."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import diskcache
import httpx
import pytest
import redis

from tests import servers
from tests.conftest import ADMIN_TOKEN, API_KEY, wait_for
from tests.object_stores import unique_path

AUTH = {"authorization": f"Bearer {API_KEY}"}


def body(text: str) -> dict:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}


def ask(proxy, text: str, tags: str | None = None, **headers: str) -> httpx.Response:
    sent = {**AUTH, **headers}
    if tags is not None:
        sent["x-cache-tags"] = tags
    response = httpx.post(proxy.base_url + "/chat/completions", json=body(text), headers=sent, timeout=10)
    assert response.status_code == 200, response.text
    return response


def status(proxy, text: str, **headers: str) -> str:
    # no-store: a miss here must not put the entry back before the next check
    return ask(proxy, text, **{"x-cache-no-store": "1", **headers}).headers["x-cache-status"]


def invalidate(proxy, *tags: str) -> dict:
    with proxy.admin() as admin:
        response = admin.post("/cache/invalidate", json={"tags": list(tags)})
    assert response.status_code == 200, response.text
    return response.json()


def on_disk(path: Path, key: str) -> bool:
    with diskcache.Cache(str(path)) as cache:
        return cache.get(key) is not None


def tiers(*extra: dict, disk: Path | None = None) -> dict:
    listed = [{"type": "local"}]
    if disk is not None:
        listed.append({"type": "disk", "path": str(disk)})
    return {"tiers": listed + list(extra)}


@pytest.fixture
def prefix() -> str:
    return f"tags-{uuid.uuid4().hex[:8]}:"


def test_invalidation_drops_tagged_entries_and_only_them(serve, fake, tmp_path):
    disk = tmp_path / "disk"
    proxy = serve(cache=tiers(disk=disk))
    keys = {
        text: ask(proxy, text, tags).headers["x-cache-key"]
        for text, tags in [("tagged a", "a"), ("tagged a and b", "b, a"), ("tagged b", "b"), ("untagged", None)]
    }
    proxy.drain()
    for text in keys:  # each served twice: the second time by the fast path
        assert status(proxy, text) == "hit"
        assert status(proxy, text) == "hit"
    assert all(on_disk(disk, key) for key in keys.values())

    assert invalidate(proxy, "a") == {"deleted": 2, "invalidated": ["a"]}

    assert status(proxy, "tagged a") == "miss"
    assert status(proxy, "tagged a and b") == "miss"
    assert status(proxy, "tagged b") == "hit"
    assert status(proxy, "untagged") == "hit"
    assert not on_disk(disk, keys["tagged a"]) and not on_disk(disk, keys["tagged a and b"])
    assert on_disk(disk, keys["tagged b"]) and on_disk(disk, keys["untagged"])
    calls = fake.chat_calls()

    # written again after the invalidation: alive, and invalidated again by the next one
    ask(proxy, "tagged a", "a")
    proxy.drain()
    assert status(proxy, "tagged a") == "hit"
    assert invalidate(proxy, "a", "nothing-has-me")["deleted"] == 1
    assert status(proxy, "tagged a") == "miss"
    assert fake.chat_calls() == calls + 2


def test_body_control_tags_an_entry(serve, fake):
    proxy = serve()
    document = {**body("tagged in the body"), "cache": {"tags": ["team:search", "v2"]}}
    with httpx.Client(headers=AUTH) as http:
        assert http.post(proxy.base_url + "/chat/completions", json=document).headers["x-cache-status"] == "miss"
        assert http.post(proxy.base_url + "/chat/completions", json=document).headers["x-cache-status"] == "hit"
        assert invalidate(proxy, "v2")["deleted"] == 1
        assert http.post(proxy.base_url + "/chat/completions", json=document).headers["x-cache-status"] == "miss"


def test_tags_through_the_sdk_and_a_stream(serve, fake):
    proxy = serve()
    client = proxy.client(default_headers={"x-cache-tags": "sdk"})
    stream = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "s"}], stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    proxy.drain()
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=[{"role": "user", "content": "s"}])
    assert raw.headers["x-cache-status"] == "hit"
    assert invalidate(proxy, "sdk")["deleted"] == 1
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=[{"role": "user", "content": "s"}])
    assert raw.headers["x-cache-status"] == "miss"


def test_embedding_inputs_carry_the_tags(serve, fake):
    proxy = serve()
    client = proxy.client(default_headers={"x-cache-tags": "docs"})
    client.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    proxy.drain()
    plain = proxy.client()
    raw = plain.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["two"])
    assert raw.headers["x-cache-status"] == "hit"
    assert invalidate(proxy, "docs")["deleted"] == 2
    raw = plain.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["one"])
    assert raw.headers["x-cache-status"] == "miss"


@pytest.mark.redis
def test_invalidation_reaches_a_second_process_within_a_second(serve, fake, redis_standalone, prefix):
    shared = {"type": "redis", "url": redis_standalone.url, "prefix": prefix}
    a = serve(cache=tiers(shared))
    b = serve(cache=tiers(shared))
    key = ask(a, "fleet", "fleet-tag").headers["x-cache-key"]
    ask(a, "fleet untouched", "other")
    a.drain()
    for proxy in (a, b):  # both serve it, b from its own local tier (fast path) the second time
        assert status(proxy, "fleet") == "hit"
        assert status(proxy, "fleet") == "hit"
        assert status(proxy, "fleet untouched") == "hit"
    store = redis.Redis.from_url(redis_standalone.url)
    assert store.exists(prefix + key)

    assert invalidate(a, "fleet-tag") == {"deleted": 1, "invalidated": ["fleet-tag"]}

    assert wait_for(lambda: status(b, "fleet") == "miss", 1.0), "b still served the invalidated entry after 1 s"
    assert status(a, "fleet") == "miss"
    assert not store.exists(prefix + key)
    assert not store.exists(prefix + "tag:fleet-tag")  # the tag's set went with it
    assert status(b, "fleet untouched") == "hit" and status(a, "fleet untouched") == "hit"
    store.close()


@pytest.mark.redis
def test_the_announcement_empties_the_other_local_tier(serve, fake, redis_standalone, prefix):
    shared = {"type": "redis", "url": redis_standalone.url, "prefix": prefix}
    a = serve(cache=tiers(shared))
    b = serve(cache=tiers(shared))
    ask(a, "eager", "eager")
    a.drain()
    assert status(b, "eager") == "hit"  # now in b's local tier too

    def local_entries(proxy) -> int:
        with proxy.admin() as admin:
            listed = admin.get("/cache/stats").json()["tiers"]
        return next(t["entries"] for t in listed if t["type"] == "local")

    assert local_entries(b) == 1
    invalidate(a, "eager")
    # without any request to b: b deleted what it held when it was told
    assert wait_for(lambda: local_entries(b) == 0, 1.0)


@pytest.mark.redis
def test_invalidation_after_a_restart_deletes_what_was_written_before(serve, fake, redis_standalone, prefix, tmp_path):
    shared = {"type": "redis", "url": redis_standalone.url, "prefix": prefix}
    disk = tmp_path / "disk"
    first = serve(cache=tiers(shared, disk=disk))
    key = ask(first, "before the restart", "release-1").headers["x-cache-key"]
    first.drain()
    first.stop()
    store = redis.Redis.from_url(redis_standalone.url)
    assert store.exists(prefix + key) and on_disk(disk, key)

    second = serve(cache=tiers(shared, disk=disk))
    assert invalidate(second, "release-1")["deleted"] == 1
    assert not store.exists(prefix + key) and not on_disk(disk, key)
    assert status(second, "before the restart") == "miss"
    store.close()


@pytest.mark.redis
def test_a_process_started_later_knows_the_invalidation(serve, fake, redis_standalone, prefix, tmp_path):
    """An entry no index knew of (written to a disk no other process reads) is dead when
    read by a process started after the invalidation: the record is in Redis."""
    shared = {"type": "redis", "url": redis_standalone.url, "prefix": prefix}
    disk = tmp_path / "disk"
    writer = serve(cache=tiers(disk=disk))
    key = ask(writer, "hidden on one disk", "old").headers["x-cache-key"]
    writer.drain()
    writer.stop()

    invalidator = serve(cache=tiers(shared))
    assert invalidate(invalidator, "old")["deleted"] == 0
    invalidator.stop()

    later = serve(cache=tiers(shared, disk=disk))
    assert on_disk(disk, key)
    assert status(later, "hidden on one disk") == "miss"
    assert wait_for(lambda: not on_disk(disk, key), 2.0), "the dead entry stayed on disk"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ("a,,b", "an empty tag"),
        ("a b", "a space"),
        ("x" * 65, "too long"),
        (",".join(f"t{i}" for i in range(17)), "too many"),
        ("été", "not ASCII"),
        ("a/b", "a slash"),
    ],
)
def test_a_bad_tags_header_is_a_400(serve, fake, value, why):
    proxy = serve()
    response = httpx.post(
        proxy.base_url + "/chat/completions",
        json=body("bad tags"),
        headers={**AUTH, "x-cache-tags": value.encode()},
    )
    assert response.status_code == 400, why
    assert response.json()["error"]["code"] == "invalid_cache_control"
    assert fake.chat_calls() == 0


@pytest.mark.parametrize("tags", [["ok", 1], "a,b", [["nested"]], {"a": 1}, None])
def test_bad_body_tags_are_a_400(serve, fake, tags):
    proxy = serve()
    document = {**body("bad body tags"), "cache": {"tags": tags}}
    response = httpx.post(proxy.base_url + "/chat/completions", json=document, headers=AUTH)
    if isinstance(tags, str):  # a comma list is accepted in the body too
        assert response.status_code == 200
        return
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cache_control"


@pytest.mark.parametrize(
    ("document", "code"),
    [
        (b"not json", "invalid_json"),
        (b"[]", "invalid_json"),
        (b"{}", "invalid_json"),
        (b'{"tags": []}', "invalid_json"),
        (b'{"tags": "a"}', "invalid_json"),
        (b'{"tags": ["a"], "more": 1}', "invalid_json"),
        (b'{"tags": ["a b"]}', "invalid_tag"),
        (b'{"tags": [1]}', "invalid_tag"),
        (b'{"tags": ["' + b"x" * 65 + b'"]}', "invalid_tag"),
    ],
)
def test_bad_invalidations_are_a_400(serve, fake, document, code):
    proxy = serve()
    with proxy.admin() as admin:
        response = admin.post("/cache/invalidate", content=document)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_invalidate_needs_the_admin_token(serve, fake):
    proxy = serve()
    response = httpx.post(proxy.root + "/cache/invalidate", json={"tags": ["a"]}, headers=AUTH)
    assert response.status_code == 401


def test_a_disk_alone_deletes_after_a_restart(serve, fake, tmp_path):
    disk = tmp_path / "disk"
    first = serve(cache=tiers(disk=disk))
    key = ask(first, "disk only", "d").headers["x-cache-key"]
    spared = ask(first, "disk only, other tag", "e").headers["x-cache-key"]
    first.drain()
    first.stop()

    second = serve(cache=tiers(disk=disk))
    assert invalidate(second, "d") == {"deleted": 1, "invalidated": ["d"]}
    assert not on_disk(disk, key) and on_disk(disk, spared)


@pytest.mark.redis
def test_a_restarted_process_is_told_and_empties_its_own_disk(serve, fake, redis_standalone, prefix, tmp_path):
    """b's disk is b's alone: a cannot reach it, b deletes what its disk's index holds."""
    shared = {"type": "redis", "url": redis_standalone.url, "prefix": prefix}
    a = serve(cache=tiers(shared, disk=tmp_path / "a"))
    b_disk = tmp_path / "b"
    b = serve(cache=tiers(shared, disk=b_disk))
    key = ask(a, "on two disks", "two").headers["x-cache-key"]
    a.drain()
    assert status(b, "on two disks") == "hit"  # promoted into b's local tier and disk
    b.drain()
    b.stop()
    assert on_disk(b_disk, key)
    serve(cache=tiers(shared, disk=b_disk))
    store = redis.Redis.from_url(redis_standalone.url)
    listening = lambda: store.pubsub_numsub(prefix + "events")[0][1] == 2  # noqa: E731
    assert wait_for(listening, 5.0), "the restarted b never subscribed"
    store.close()

    invalidate(a, "two")
    assert wait_for(lambda: not on_disk(b_disk, key), 1.0), "b's disk kept the entry"


@pytest.mark.object_store
def test_an_object_tier_loses_its_tagged_objects(serve, fake, s3_store):
    path = unique_path()
    listed = [{"type": "local"}, s3_store.tier_config(path)]

    def entries() -> list[str]:  # the tag records are objects too, under _tags/
        return [name for name in s3_store.names(path.strip("/") + "/") if "/_tags/" not in name]

    writer = serve(cache={"tiers": listed})
    ask(writer, "in the bucket", "bucket")
    ask(writer, "in the bucket too", "bucket-later")
    ask(writer, "kept in the bucket", "other")
    writer.drain()
    assert len(entries()) == 3
    assert invalidate(writer, "bucket")["deleted"] == 1  # this process knew the key
    assert len(entries()) == 2
    writer.stop()

    later = serve(cache={"tiers": listed})  # knows no key: the record and the check do it
    assert invalidate(later, "bucket-later")["deleted"] == 0
    assert status(later, "in the bucket too") == "miss"
    assert wait_for(lambda: len(entries()) == 1, 5.0), "the dead object stayed"
    assert status(later, "kept in the bucket") == "hit"


def test_a_semantic_hit_on_an_invalidated_entry_is_a_miss(serve, fake):
    semantic = {
        "type": "qdrant",
        "qdrant": {"collection": f"c{uuid.uuid4().hex[:8]}"},
        "embedding": {"local": "all-MiniLM-L6-v2"},
    }
    proxy = serve(cache={"semantic": semantic})
    assert ask(proxy, "What is the capital of France?", "geo").headers["x-cache-status"] == "miss"
    proxy.drain()
    paraphrase = "What's the capital city of France?"
    assert status(proxy, paraphrase) == "semantic-hit"
    invalidate(proxy, "geo")
    assert status(proxy, paraphrase) == "miss"


@pytest.mark.redis
@pytest.mark.subprocess
def test_two_llmcache_processes(tmp_path, fake, redis_standalone, prefix):
    """The whole promise with `llmcache serve` processes: each its own local and disk tier
    in front of one Redis."""
    script = Path(sys.executable).parent / "llmcache"
    processes: dict[str, subprocess.Popen] = {}

    def start(name: str) -> str:
        port = servers.free_port()
        config = {
            "upstream": {"base_url": fake.url, "timeout_s": 5},
            "cache": {
                "tiers": [
                    {"type": "local"},
                    {"type": "disk", "path": str(tmp_path / name)},
                    {"type": "redis", "url": redis_standalone.url, "prefix": prefix},
                ]
            },
            "admin": {"token": ADMIN_TOKEN},
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(json.dumps(config))
        with (tmp_path / f"{name}.log").open("a") as log:
            processes[name] = subprocess.Popen(
                [str(script), "serve", "--config", str(path), "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        root = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: answers(root), 30.0), (tmp_path / f"{name}.log").read_text()
        return root

    def answers(root: str) -> bool:
        try:
            return httpx.get(root + "/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def post(root: str, text: str, tags: str | None = None, store: bool = True) -> httpx.Response:
        headers = {**AUTH, **({"x-cache-tags": tags} if tags else {}), **({} if store else {"x-cache-no-store": "1"})}
        return httpx.post(root + "/v1/chat/completions", json=body(text), headers=headers, timeout=10)

    def invalidate_on(root: str, tag: str) -> dict:
        response = httpx.post(
            root + "/cache/invalidate", json={"tags": [tag]}, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert response.status_code == 200, response.text
        return response.json()

    store = redis.Redis.from_url(redis_standalone.url)
    channel = prefix + "events"
    try:
        a, b = start("a"), start("b")
        assert wait_for(lambda: store.pubsub_numsub(channel)[0][1] == 2, 5.0)
        key = post(a, "tagged", "release").headers["x-cache-key"]
        untagged = post(a, "untagged").headers["x-cache-key"]
        for root in (a, b, b):  # b: from Redis, then from its local tier
            assert wait_for(lambda root=root: post(root, "tagged", store=False).headers["x-cache-status"] == "hit")
            assert post(root, "untagged", store=False).headers["x-cache-status"] == "hit"
        assert on_disk(tmp_path / "a", key) and on_disk(tmp_path / "b", key) and store.exists(prefix + key)

        assert invalidate_on(a, "release")["deleted"] == 1
        assert wait_for(lambda: post(b, "tagged", store=False).headers["x-cache-status"] == "miss", 1.0)
        assert post(a, "tagged", store=False).headers["x-cache-status"] == "miss"
        assert not store.exists(prefix + key)
        assert wait_for(lambda: not on_disk(tmp_path / "a", key) and not on_disk(tmp_path / "b", key), 1.0)
        for root in (a, b):
            assert post(root, "untagged", store=False).headers["x-cache-status"] == "hit"
        assert on_disk(tmp_path / "a", untagged) and store.exists(prefix + untagged)

        # written before a restart, invalidated after it
        again = post(a, "tagged again", "next").headers["x-cache-key"]
        assert wait_for(lambda: on_disk(tmp_path / "a", again) and bool(store.exists(prefix + again)))
        processes["a"].terminate()
        processes["a"].wait(20)
        a = start("a")
        assert invalidate_on(a, "next")["deleted"] == 1
        assert not on_disk(tmp_path / "a", again) and not store.exists(prefix + again)
        assert post(a, "tagged again", store=False).headers["x-cache-status"] == "miss"
    finally:
        for process in processes.values():
            process.terminate()
            process.wait(20)
        store.close()
