"""Qdrant vectors: a server at `url`, or embedded (in-process, in memory or at `path`)."""

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
# query: a match on an expired point finds no exact entry anyway, and embedded Qdrant
# evaluates filters point by point in Python, so each condition costs every lookup.
SWEEP_INTERVAL_S = 60.0


class QdrantIndex(VectorIndex):
    type = "qdrant"

    def __init__(self, settings: QdrantSettings) -> None:
        self.collection = settings.collection
        if settings.url:
            self.client = AsyncQdrantClient(url=settings.url, api_key=settings.api_key)
        elif settings.path:
            self.client = AsyncQdrantClient(path=settings.path)
        else:
            self.client = AsyncQdrantClient(location=":memory:")
        self._swept = time.monotonic()

    async def open(self, dims: int) -> None:
        if not await self.client.collection_exists(self.collection):
            await self.client.create_collection(
                self.collection, vectors_config=models.VectorParams(size=dims, distance=models.Distance.COSINE)
            )
        for field in ("fp", "ns"):
            await self.client.create_payload_index(self.collection, field, models.PayloadSchemaType.KEYWORD)

    async def search(
        self, embedding: np.ndarray, fingerprint: str, limit: int, threshold: float
    ) -> list[Candidate]:
        only_this_context = models.Filter(
            must=[models.FieldCondition(key="fp", match=models.MatchValue(value=fingerprint))]
        )
        result = await self.client.query_points(
            self.collection, query=embedding.tolist(), query_filter=only_this_context,
            limit=limit, score_threshold=threshold, with_payload=True,
        )
        return [
            Candidate(p.payload["key"], p.payload["text"], similarity_of_cosine(p.score))
            for p in result.points if p.payload
        ]

    async def add(self, vector: Vector) -> None:
        expires = None if vector.ttl_s is None else time.time() + vector.ttl_s
        payload = {
            "fp": vector.fingerprint, "ns": vector.namespace or NO_NAMESPACE,
            "key": vector.key, "text": vector.text, "exp": expires,
        }
        point = models.PointStruct(id=point_id(vector.key), vector=vector.embedding.tolist(), payload=payload)
        await self.client.upsert(self.collection, points=[point])
        if time.monotonic() - self._swept > SWEEP_INTERVAL_S:
            self._swept = time.monotonic()
            expired = models.Filter(must=[models.FieldCondition(key="exp", range=models.Range(lt=time.time()))])
            await self.client.delete(self.collection, points_selector=models.FilterSelector(filter=expired))

    async def clear(self, namespace: str | None) -> None:
        if namespace is None:
            selector = models.Filter(must=[])
        else:
            selector = models.Filter(must=[models.FieldCondition(key="ns", match=models.MatchValue(value=namespace))])
        await self.client.delete(self.collection, points_selector=models.FilterSelector(filter=selector))

    async def ping(self) -> None:
        await self.client.collection_exists(self.collection)

    async def close(self) -> None:
        await self.client.close()


def point_id(key: str) -> str:
    """One point per exact key: re-storing an entry replaces its vector."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))
