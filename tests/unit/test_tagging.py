"""Invalidation by tag in the chain: the check on every path a tagged entry is read by
(the fast path's peek included), the records read on first sight, and what a tag is."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import codec
from app.background import Background
from app.codec import new_entry
from app.encryption import Cipher
from app.respond import Prebuilt, prebuild
from app.tags import MAX_TAGS, read_tags, valid_tag
from app.tiers import tagging
from app.tiers.chain import Chain
from app.tiers.local import LocalTier
from app.tiers.tagging import record_key
from tests.unit.stubs import StubTier, guard
from tests.unit.test_fleet import StubShared, drained


def tagged(*tags: str, created_at: float | None = None) -> bytes:
    entry = new_entry(b'{"answer": 1}', "application/json", 600, tags=tags)
    if created_at is not None:
        entry = codec.Entry(entry.body, entry.content_type, created_at, None, tags=tags)
    return codec.encode(entry)


def record(at: float) -> bytes:
    return codec.encode(codec.Entry(repr(at).encode(), "text/plain", at, None))


@pytest.fixture
async def chains() -> AsyncIterator[list[Chain]]:
    made: list[Chain] = []
    yield made
    for chain in made:
        await chain.close(drain_timeout_s=5)


def over(chains: list[Chain], *tiers: LocalTier | StubTier) -> Chain:
    chain = Chain([guard(t, timeout_s=1) for t in tiers], Background())
    chains.append(chain)
    return chain


def peek(chain: Chain, key: str) -> Prebuilt | None:
    return chain.peek(key, None, time.time(), prebuild)


async def test_the_fast_path_waits_for_the_tags_record_then_obeys_it(chains: list[Chain]) -> None:
    front = LocalTier("local", 100, 1 << 20)
    remote = StubTier("remote")
    chain = over(chains, front, remote)
    # put there directly: no index of this process knows the key, only the check can find it
    await front.set("k", tagged("t"), None)
    await front.set("plain", codec.encode(new_entry(b"{}", "application/json", 600)), None)
    assert peek(chain, "plain") is not None  # untagged: nothing to read, nothing to check
    assert peek(chain, "k") is None  # its tag's record not read yet: `get` decides
    assert await chain.get("k") is not None
    assert remote.calls["get"] == 1  # the record, read once
    hit = peek(chain, "k")
    assert hit is not None and hit.tags == ("t",)

    assert await chain.invalidate_tags(("t",)) == 0  # nothing indexed: the check does it
    assert peek(chain, "k") is None
    assert await chain.get("k") is None
    await chain.background.drain()
    assert await front.get("k") is None  # deleted where it was found
    assert peek(chain, "plain") is not None
    assert remote.data[record_key("t")]  # the record, persisted


async def test_a_record_in_a_persistent_tier_kills_older_entries(chains: list[Chain]) -> None:
    invalidated_at = time.time()
    remote = StubTier(
        "remote",
        {
            "old": tagged("t", created_at=invalidated_at - 10),
            "new": tagged("t", created_at=invalidated_at + 10),
            "other": tagged("u", created_at=invalidated_at - 10),
            record_key("t"): record(invalidated_at),
        },
    )
    chain = over(chains, LocalTier("local", 100, 1 << 20), remote)
    assert await chain.get("old") is None
    assert await chain.get("new") is not None
    found = await chain.get_many(["old", "new", "other"])
    assert sorted(found) == ["new", "other"]
    await chain.background.drain()
    assert "old" not in remote.data and "new" in remote.data


async def test_a_sealed_record_is_read_by_a_process_started_later(chains: list[Chain]) -> None:
    cipher = Cipher([os.urandom(32)])
    store = StubTier("store")
    first = Chain([guard(store, timeout_s=1)], Background(), cipher)
    chains.append(first)
    await first.set("old", codec.decode(tagged("t")))
    await first.invalidate_tags(("t",))
    assert store.data[record_key("t")][3] & 2  # sealed, like every entry in this tier
    await first.set("new", codec.decode(tagged("t", created_at=time.time() + 1)))
    store.data["old"] = codec.encode(codec.decode(tagged("t", created_at=time.time() - 5)), None, cipher, "old")

    later = Chain([guard(store, timeout_s=1)], Background(), cipher)  # knows nothing yet
    chains.append(later)
    assert await later.get("old") is None
    assert await later.get("new") is not None


async def test_an_unreadable_record_serves_the_entry_and_is_read_again(chains: list[Chain]) -> None:
    holder = StubTier("holder", {"k": tagged("t")})
    down = StubTier("down")
    down.failing.add("get")
    chain = over(chains, holder, down)
    assert await chain.get("k") is not None  # served: a tier that is down must not fail requests
    assert await chain.get("k") is not None
    assert down.calls["get"] == 2  # not learnt: read again on each sight while it fails
    down.failing.clear()
    assert await chain.get("k") is not None
    assert await chain.get("k") is not None
    assert down.calls["get"] == 3  # learnt once it answered


async def test_a_tag_announcement_from_another_process(chains: list[Chain]) -> None:
    shared = StubShared("shared")
    front = LocalTier("local", 100, 1 << 20)
    chain = over(chains, front, shared)
    chain.start()
    await asyncio.wait_for(shared.listening.wait(), 5)
    await chain.set("mine", codec.decode(tagged("t")))
    await chain.set("spared", codec.decode(tagged("u")))
    assert await chain.get("mine") is not None
    for message in (
        {"op": "tags", "tags": ["bad tag"], "at": time.time() + 5},
        {"op": "tags", "tags": "t", "at": time.time() + 5},
        {"op": "tags", "tags": ["t"], "at": "soon"},
        {"op": "tags", "tags": ["t"]},
    ):
        await shared.publish(orjson.dumps(message))
    await asyncio.wait_for(drained(shared), 5)
    assert await chain.get("mine") is not None  # malformed: ignored
    assert shared.listens == 1  # and the channel kept
    await shared.publish(orjson.dumps({"op": "tags", "tags": ["t"], "at": time.time()}))
    await asyncio.wait_for(drained(shared), 5)
    await chain.background.drain()
    assert await front.get("mine") is None and "mine" not in shared.data  # deleted eagerly, everywhere
    assert await chain.get("spared") is not None


@given(st.one_of(st.text(max_size=300), st.lists(st.text(max_size=80), max_size=30)))
def test_read_tags_takes_only_tags(value: str | list[str]) -> None:
    tags = read_tags(value)
    if tags is not None:
        assert len(tags) <= MAX_TAGS and len(set(tags)) == len(tags)
        assert all(valid_tag(tag) and "\n" not in tag for tag in tags)
        decoded = codec.decode(codec.encode(new_entry(b"x", "t", None, tags=tags)))
        assert decoded.tags == tags


@given(st.lists(st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True), min_size=1, max_size=MAX_TAGS))
def test_every_list_of_tags_is_read_back(tags: list[str]) -> None:
    assert read_tags(",".join(tags)) == tuple(dict.fromkeys(tags))
    assert read_tags(tags) == tuple(dict.fromkeys(tags))


async def test_past_the_index_bound_the_check_alone_drops_them(
    chains: list[Chain], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tagging, "MAX_INDEXED_KEYS", 3)
    front = LocalTier("local", 100, 1 << 20)
    chain = over(chains, front, StubTier("remote"))
    keys = [f"k{i}" for i in range(5)]
    for key in keys:
        await chain.set(key, codec.decode(tagged("t")))
        assert await chain.get(key) is not None and peek(chain, key) is not None
    assert await chain.invalidate_tags(("t",)) == 3  # those remembered
    assert [peek(chain, key) for key in keys] == [None] * 5
    assert [await chain.get(key) for key in keys] == [None] * 5
    await chain.set("k0", codec.decode(tagged("t")))  # written again: the index has room again
    assert await chain.invalidate_tags(("t",)) == 1
