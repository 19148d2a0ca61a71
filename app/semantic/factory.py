"""Build the semantic cache a config describes."""

from __future__ import annotations

import numpy as np

from app.config import SemanticSettings
from app.metrics import Metrics
from app.routing import Routing
from app.semantic.cache import Embed, SemanticCache
from app.semantic.guard.rules import EmbedMany
from app.semantic.index import VectorIndex
from app.tiers.chain import Chain
from app.upstream import Upstream


def build_index(settings: SemanticSettings) -> VectorIndex:
    if settings.type == "qdrant" and settings.qdrant.url is None:
        from app.semantic.matrix import MatrixIndex

        qdrant = settings.qdrant
        return MatrixIndex(qdrant.path, qdrant.collection, qdrant.max_entries)
    if settings.type == "qdrant":
        from app.semantic.qdrant import QdrantIndex

        return QdrantIndex(settings.qdrant)
    from app.semantic.redis import RedisIndex

    return RedisIndex(settings.redis)


def build_semantic(
    settings: SemanticSettings,
    upstream: Upstream,
    routing: Routing,
    chain: Chain,
    ttl_s: float | None,
    metrics: Metrics | None = None,
) -> SemanticCache:
    """Embedder and index; a missing local model fails here, at startup."""
    embed: Embed
    # The guard embeds the sentences around a swapped word; only an in-process model
    # does that without a paid call per candidate.
    embed_in_thread: EmbedMany | None = None
    if settings.embedding.local is not None:
        from app.semantic.embedder import LocalEmbedder

        local = LocalEmbedder(settings.embedding.local)

        async def embed(text: str, authorization: str | None) -> np.ndarray:
            vectors = await local.embed([text])
            vector: np.ndarray = vectors[0]
            return vector

        embed_in_thread = local.embed_many
    else:
        from app.semantic.remote_embedder import RemoteEmbedder

        assert settings.embedding.model is not None
        embed = RemoteEmbedder(settings.embedding.model, upstream, routing, chain, ttl_s)
    return SemanticCache(settings, embed, build_index(settings), chain, metrics, embed_in_thread)
