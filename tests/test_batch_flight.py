"""Embedding batches go upstream through the pipeline's single flight like any call."""

from __future__ import annotations

import asyncio


async def test_concurrent_identical_batches_make_one_upstream_call(asgi, fake):
    client = await asgi()
    await client.post("/v1/embeddings", json={"model": "e", "input": "cached"})  # one item already stored
    body = {"model": "e", "input": ["cached", "fresh-1", "fresh-2"]}
    slow = {"x-fake-delay-ms": "200"}  # keeps the first batch in flight while the rest arrive
    answers = await asyncio.gather(*(client.post("/v1/embeddings", json=body, headers=slow) for _ in range(10)))
    assert [a.status_code for a in answers] == [200] * 10
    assert {a.headers["x-cache-status"] for a in answers} == {"partial"}
    assert fake.stats()["calls"]["embeddings"] == 2  # the single item, then one call for the batches
    missing_sent = [r["embedding_inputs"] for r in fake.stats()["requests"]][-1]
    assert missing_sent == ["fresh-1", "fresh-2"]
    assert len({a.content for a in answers}) == 1  # every caller got the same vectors, in its order
    again = await client.post("/v1/embeddings", json=body)
    assert again.headers["x-cache-status"] == "hit"


async def test_a_different_batch_is_not_joined(asgi, fake):
    client = await asgi()
    slow = {"x-fake-delay-ms": "100"}
    first, second = await asyncio.gather(
        client.post("/v1/embeddings", json={"model": "e", "input": ["a", "b"]}, headers=slow),
        client.post("/v1/embeddings", json={"model": "e", "input": ["b", "a"]}, headers=slow),
    )
    assert first.status_code == second.status_code == 200
    assert fake.stats()["calls"]["embeddings"] == 2
    assert [d["index"] for d in second.json()["data"]] == [0, 1]
