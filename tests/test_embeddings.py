"""Embeddings: one entry per input item; partial hits send only the missing items."""

from __future__ import annotations


def inputs_sent(fake) -> list:
    return [r["embedding_inputs"] for r in fake.stats()["requests"] if r["embedding_inputs"] is not None]


def test_sdk_single_input_hit(serve, fake):
    client = serve().client()
    first = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello")
    second = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello")
    assert second.headers["x-cache-status"] == "hit"
    assert second.headers["x-cache-key"] == first.headers["x-cache-key"]
    assert second.parse().data[0].embedding == first.parse().data[0].embedding
    assert fake.stats()["calls"]["embeddings"] == 1


async def test_single_input_hit_is_byte_for_byte(asgi, fake):
    client = await asgi()
    body = {"model": "e", "input": "hello"}
    miss = await client.post("/v1/embeddings", json=body)
    hit = await client.post("/v1/embeddings", json=body)
    assert hit.headers["x-cache-status"] == "hit" and hit.content == miss.content


async def test_partial_batch_sends_only_missing_items_and_keeps_order(asgi, fake):
    client = await asgi()
    first = await client.post("/v1/embeddings", json={"model": "e", "input": ["alpha", "beta"]})
    assert first.headers["x-cache-status"] == "miss"
    assert first.headers["x-cache-hits"] == "0/2"
    assert "x-cache-key" not in first.headers
    vectors = {item["index"]: item["embedding"] for item in first.json()["data"]}

    second = await client.post("/v1/embeddings", json={"model": "e", "input": ["beta", "gamma", "alpha"]})
    assert second.status_code == 200
    assert second.headers["x-cache-status"] == "partial"
    assert second.headers["x-cache-hits"] == "2/3"
    assert inputs_sent(fake)[-1] == ["gamma"]
    data = second.json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2]
    assert data[0]["embedding"] == vectors[1]
    assert data[2]["embedding"] == vectors[0]

    # gamma alone now comes from cache, and it equals what the upstream computes for it
    direct = await client.post("/v1/embeddings", json={"model": "e", "input": "gamma"})
    assert direct.headers["x-cache-status"] == "hit"
    assert direct.json()["data"][0]["embedding"] == data[1]["embedding"]

    full = await client.post("/v1/embeddings", json={"model": "e", "input": ["gamma", "alpha"]})
    assert full.headers["x-cache-status"] == "hit"
    assert full.headers["x-cache-hits"] == "2/2"
    assert fake.stats()["calls"]["embeddings"] == 2


async def test_token_array_inputs(asgi, fake):
    client = await asgi()
    await client.post("/v1/embeddings", json={"model": "e", "input": [[1, 2, 3], [4, 5]]})
    single = await client.post("/v1/embeddings", json={"model": "e", "input": [4, 5]})
    assert single.headers["x-cache-status"] == "hit"


async def test_parameters_separate_item_entries(asgi, fake):
    client = await asgi()
    await client.post("/v1/embeddings", json={"model": "e", "input": ["x"]})
    b64 = await client.post("/v1/embeddings", json={"model": "e", "input": ["x"], "encoding_format": "base64"})
    assert b64.headers["x-cache-status"] == "miss"
    assert isinstance(b64.json()["data"][0]["embedding"], str)
    dims = await client.post("/v1/embeddings", json={"model": "e", "input": "x", "dimensions": 4})
    assert dims.headers["x-cache-status"] == "miss"
    assert len(dims.json()["data"][0]["embedding"]) == 4


async def test_batch_only_if_cached_partial_is_504(asgi, fake):
    client = await asgi()
    await client.post("/v1/embeddings", json={"model": "e", "input": "a"})
    response = await client.post(
        "/v1/embeddings", json={"model": "e", "input": ["a", "b"]}, headers={"cache-control": "only-if-cached"}
    )
    assert response.status_code == 504
    assert fake.stats()["calls"]["embeddings"] == 1


async def test_upstream_error_on_batch_passes_through(asgi, fake):
    client = await asgi()
    response = await client.post(
        "/v1/embeddings", json={"model": "e", "input": ["a", "b"]}, headers={"x-fake-status": "500"}
    )
    assert response.status_code == 500
    retry = await client.post("/v1/embeddings", json={"model": "e", "input": ["a", "b"]})
    assert retry.headers["x-cache-status"] == "miss"


async def test_invalid_input_shape_is_forwarded_not_cached(asgi, fake):
    client = await asgi()
    response = await client.post("/v1/embeddings", json={"model": "e", "input": []})
    assert response.status_code == 400
    assert response.headers["x-cache-status"] == "bypass"
