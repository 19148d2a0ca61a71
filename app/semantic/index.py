"""The vector store contract: vectors with their context fingerprint and exact key.

Answers never live here: a match names an exact key, and the answer is read from the
exact tiers, so TTL, delete and flush apply to semantic matches as they do to entries.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(slots=True, frozen=True)
class Candidate:
    key: str  # the exact cache key of the entry that answered this question
    text: str  # the question it answered, for the guard
    similarity: float  # cosine, 0..1


@dataclass(slots=True, frozen=True)
class Vector:
    key: str
    text: str
    fingerprint: str
    namespace: str | None
    embedding: np.ndarray
    ttl_s: float | None


class VectorIndex(ABC):
    type: str

    @abstractmethod
    async def open(self, dims: int) -> None:
        """Create the collection / index if missing."""

    @abstractmethod
    async def search(self, embedding: np.ndarray, fingerprint: str, limit: int, threshold: float) -> list[Candidate]:
        """Nearest vectors of this fingerprint only (filtered inside the query), best first."""

    @abstractmethod
    async def add(self, vector: Vector) -> None: ...

    @abstractmethod
    async def clear(self, namespace: str | None) -> None: ...

    @abstractmethod
    async def ping(self) -> None: ...

    async def close(self) -> None:
        return None


def similarity_of_cosine(score: float) -> float:
    """Cosine similarity clamped to the contract's 0..1 (opposite vectors never match)."""
    return min(1.0, max(0.0, score))
