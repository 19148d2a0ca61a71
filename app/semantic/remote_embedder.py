"""Embeddings from the upstream's /v1/embeddings, through the exact cache.

A question is embedded once: its vector is stored in the exact tiers under a key of its
own credential scope, so the next lookup of the same text costs a cache read.
"""

from __future__ import annotations

import numpy as np
import orjson

from app import tracing
from app.codec import new_entry
from app.errors import ProxyError
from app.keys import cache_key
from app.routing import Routing
from app.tiers.chain import Chain
from app.upstream import Upstream, upstream_url

SCOPE = "llmcache-semantic-embedder"


class EmbeddingFailed(Exception):
    """The upstream could not embed the question; the lookup becomes a miss."""


class RemoteEmbedder:
    def __init__(self, model: str, upstream: Upstream, routing: Routing, chain: Chain, ttl_s: float | None) -> None:
        self.model = model
        self.upstream = upstream
        self.routing = routing
        self.chain = chain
        self.ttl_s = ttl_s

    async def __call__(self, text: str, authorization: str | None) -> np.ndarray:
        key = cache_key("embeddings", None, {"model": self.model, "input": text}, SCOPE, None)
        entry = await self.chain.get(key)
        if entry is not None:
            return _vector(entry.body)
        route = self.routing.route(self.model)
        headers = [(b"content-type", b"application/json")]
        credential = f"Bearer {route.api_key}" if route.api_key else authorization
        if credential:
            headers.append((b"authorization", credential.encode()))
        body = orjson.dumps({"model": route.upstream_model or self.model, "input": text})
        try:
            url = upstream_url(route.base_url, "/embeddings")
            response = await self.upstream.call("POST", url, tracing.forwarded(headers), body)
        except ProxyError as exc:
            raise EmbeddingFailed(exc.message) from exc
        if not response.is_success:
            raise EmbeddingFailed(f"upstream answered {response.status_code}")
        vector = _vector(response.content)
        await self.chain.set(key, new_entry(response.content, "application/json", self.ttl_s))
        return vector


def _vector(body: bytes) -> np.ndarray:
    try:
        document = orjson.loads(body)
        values = np.asarray(document["data"][0]["embedding"], dtype=np.float32)
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise EmbeddingFailed(f"unusable embeddings response: {exc}") from exc
    norm = float(np.linalg.norm(values))
    if not norm:
        raise EmbeddingFailed("zero embedding")
    return values / norm
