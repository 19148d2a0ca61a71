"""Qdrant vectors: a server at `url` (or qdrant-client's local mode, in memory or at `path`).

A server keeps every context in one collection and restricts each search to the
request's context with an indexed payload filter inside the query. The local mode
evaluates payload filters point by point in Python (microseconds per stored vector, on
every lookup), so there each context gets a collection of its own: a search then only
ever sees the vectors of its context, with no filter to evaluate. The local mode still
scans every vector of a context in Python (7-10 ms per search at 10k entries), so the
embedded mode of the config (`url: null`) is app/semantic/matrix.py instead; the local
mode remains for the index contract tests, which have no Qdrant server.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
from qdrant_client import AsyncQdrantClient
from qdrant_client.http import models

from app.config import QdrantSettings
from app.semantic.index import Candidate, Vector, VectorIndex, similarity_of_cosine

NO_NAMESPACE = ""
# Expired points are swept in bulk this often instead of being filtered out by every
# query: a match on an expired point finds no exact entry in the tiers anyway.
SWEEP_INTERVAL_S = 60.0


class QdrantIndex(VectorIndex):
    type = "qdrant"

    def __init__(self, settings: QdrantSettings) -> None:
        self.collection = settings.collection
        self.partitioned = not settings.url
        if settings.url:
            self.client = AsyncQdrantClient(url=settings.url, api_key=settings.api_key)
        elif settings.path:
            self.client = AsyncQdrantClient(path=settings.path)
        else:
            self.client = AsyncQdrantClient(location=":memory:")
        self._dims = 0
        self._known: set[str] = set()
        self._swept = time.monotonic()

    def _collection_of(self, fingerprint: str) -> str:
        return f"{self.collection}-{fingerprint[:32]}" if self.partitioned else self.collection

    async def _ensure(self, name: str) -> None:
        if name in self._known:
            return
        if not await self.client.collection_exists(name):
            params = models.VectorParams(size=self._dims, distance=models.Distance.COSINE)
            await self.client.create_collection(name, vectors_config=params)
            if not self.partitioned:
                for field in ("fp", "ns"):
                    await self.client.create_payload_index(name, field, models.PayloadSchemaType.KEYWORD)
        self._known.add(name)

    async def _ours(self) -> list[str]:
        names = [c.name for c in (await self.client.get_collections()).collections]
        if not self.partitioned:
            return [n for n in names if n == self.collection]
        return [n for n in names if n.startswith(f"{self.collection}-")]

    async def open(self, dims: int) -> None:
        self._dims = dims
        if self.partitioned:
            self._known.update(await self._ours())
        else:
            await self._ensure(self.collection)

    async def search(self, embedding: np.ndarray, fingerprint: str, limit: int, threshold: float) -> list[Candidate]:
        name = self._collection_of(fingerprint)
        if name not in self._known:
            return []  # no entry of this context yet
        only_this_context = None
        if not self.partitioned:
            only_this_context = models.Filter(
                must=[models.FieldCondition(key="fp", match=models.MatchValue(value=fingerprint))]
            )
        result = await self.client.query_points(
            name,
            query=embedding.tolist(),
            query_filter=only_this_context,
            limit=limit,
            score_threshold=threshold,
            with_payload=True,
        )
        return [
            Candidate(p.payload["key"], p.payload["text"], similarity_of_cosine(p.score))
            for p in result.points
            if p.payload
        ]

    async def add(self, vector: Vector) -> None:
        name = self._collection_of(vector.fingerprint)
        await self._ensure(name)
        expires = None if vector.ttl_s is None else time.time() + vector.ttl_s
        payload = {
            "fp": vector.fingerprint,
            "ns": vector.namespace or NO_NAMESPACE,
            "key": vector.key,
            "text": vector.text,
            "exp": expires,
        }
        point = models.PointStruct(id=point_id(vector.key), vector=vector.embedding.tolist(), payload=payload)
        await self.client.upsert(name, points=[point])
        if time.monotonic() - self._swept > SWEEP_INTERVAL_S:
            self._swept = time.monotonic()
            await self._sweep()

    async def _sweep(self) -> None:
        expired = models.Filter(must=[models.FieldCondition(key="exp", range=models.Range(lt=time.time()))])
        for name in await self._ours():
            await self.client.delete(name, points_selector=models.FilterSelector(filter=expired))

    async def clear(self, namespace: str | None) -> None:
        for name in await self._ours():
            if namespace is None and self.partitioned:
                await self.client.delete_collection(name)
                self._known.discard(name)
                continue
            conditions = (
                [] if namespace is None else [models.FieldCondition(key="ns", match=models.MatchValue(value=namespace))]
            )
            selector = models.FilterSelector(filter=models.Filter(must=conditions))
            await self.client.delete(name, points_selector=selector)

    async def ping(self) -> None:
        await self.client.get_collections()

    async def close(self) -> None:
        await self.client.close()


def point_id(key: str) -> str:
    """One point per exact key: re-storing an entry replaces its vector."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))
