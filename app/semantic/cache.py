"""The semantic cache: after an exact miss, find an earlier answer to a paraphrase.

lookup: final question + context fingerprint → embedding → nearest vectors of the same
fingerprint above the threshold → the guard refuses near-misses (other numbers,
negation, entities, direction) → the first candidate whose exact entry still exists.
remember: after the upstream answered and the exact entry is stored, its vector.

Every failure on this path (embedding, vector store) is a plain miss.

With encryption at rest the question text the guard reads is stored sealed (bound to its
entry's key) and opened per candidate; the vector itself cannot be encrypted and still
searched, and stays as it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from app import tracing
from app.codec import Entry
from app.config import SemanticSettings
from app.encryption import DecryptError
from app.keys import cache_key
from app.metrics import Metrics
from app.semantic.context import Question, question_of
from app.semantic.guard import Guard, RuleName, default_rules
from app.semantic.guard.rules import OTHER_LANGUAGE_FLOOR, SUBSTITUTION_THRESHOLD, EmbedMany
from app.semantic.index import Candidate, Vector, VectorIndex
from app.tiers.chain import Chain
from app.tiers.guarded import probe

log = logging.getLogger("llmcache.semantic")

SEMANTIC_CALL_TYPES = frozenset(("chat_completions", "completions"))
LOOKUP_RESULTS = ("hit", "vetoed", "miss", "error")
# Associated data of a sealed question: binds it to its entry's key, and keeps it apart
# from any entry body sealed under the same key.
QUESTION_CONTEXT = b"llmcache semantic question\0"
# embed(text, caller's Authorization header) → one L2-normalised vector
Embed = Callable[[str, str | None], Awaitable[np.ndarray]]


@dataclass(slots=True)
class Asked:
    """The semantic side of one request, kept so its answer can be remembered."""

    question: Question
    fingerprint: str
    namespace: str | None
    embedding: np.ndarray | None = None


@dataclass(slots=True, frozen=True)
class Match:
    entry: Entry
    candidate: Candidate


class SemanticCache:
    def __init__(
        self,
        settings: SemanticSettings,
        embed: Embed,
        index: VectorIndex,
        chain: Chain,
        metrics: Metrics | None = None,
        embed_in_thread: EmbedMany | None = None,
    ) -> None:
        self.settings = settings
        self.embed = embed
        self.index = index
        self.chain = chain
        self.metrics = metrics
        floor = None if settings.other_languages == "refuse" else OTHER_LANGUAGE_FLOOR
        rules = default_rules(floor, SUBSTITUTION_THRESHOLD, embed_in_thread)
        self.guard = Guard(rules) if settings.guard else None
        if metrics is not None:
            metrics.declare_semantic(LOOKUP_RESULTS, RuleName)
        self._opened = False
        self._opening = asyncio.Lock()

    async def _open(self, dims: int) -> None:
        """The index is created on first use: an upstream embedder's size is known only then."""
        async with self._opening:
            if not self._opened:
                await self.index.open(dims)
                self._opened = True

    def ask(
        self,
        call_type: str,
        group: str | None,
        payload: dict[str, Any],
        scope: str | None,
        namespace: str | None,
        query: str = "",
    ) -> Asked | None:
        question = question_of(call_type, payload) if call_type in SEMANTIC_CALL_TYPES else None
        if question is None:
            return None
        context_key = cache_key(call_type, group, question.context, scope, namespace, query)
        return Asked(question, context_key.rpartition("/")[2], namespace)

    async def lookup(
        self, asked: Asked, authorization: str | None, threshold: float | None, max_age_s: float | None
    ) -> Match | None:
        vetoes: list[RuleName] = []
        try:
            async with asyncio.timeout(self.settings.timeout_s + self.settings.embedding.timeout_s):
                match = await self._lookup(asked, authorization, threshold, max_age_s, vetoes)
        except Exception as exc:  # the semantic path can only ever turn into a miss
            log.warning("semantic lookup failed: %r", exc)
            self._count("error", vetoes)
            return None
        self._count("hit" if match else "vetoed" if vetoes else "miss", vetoes)
        return match

    def _count(self, result: str, vetoes: list[RuleName]) -> None:
        if self.metrics is not None:
            self.metrics.semantic_lookup(result, vetoes)

    async def _lookup(
        self,
        asked: Asked,
        authorization: str | None,
        threshold: float | None,
        max_age_s: float | None,
        vetoes: list[RuleName],
    ) -> Match | None:
        with tracing.span(tracing.SEMANTIC_EMBED):
            asked.embedding = await self.embed(asked.question.text, authorization)
        if not self._opened:
            await self._open(len(asked.embedding))
        floor = self.settings.threshold if threshold is None else threshold
        with tracing.span(tracing.SEMANTIC_SEARCH) as traced:
            candidates = await self.index.search(asked.embedding, asked.fingerprint, self.settings.candidates, floor)
            if traced is not None:
                traced.set_attribute(tracing.CANDIDATES, len(candidates))
        for sealed in candidates:
            candidate = self._unsealed(sealed)
            if candidate is None:
                continue
            rule = await self._veto(asked.question.text, candidate)
            if rule is not None:
                vetoes.append(rule)
                log.debug(
                    "semantic candidate %s (similarity %.3f) vetoed: %s", candidate.key, candidate.similarity, rule
                )
                continue
            entry = await self.chain.get(candidate.key, max_age_s)
            if entry is not None:
                return Match(entry, candidate)
        return None

    def _unsealed(self, candidate: Candidate) -> Candidate | None:
        cipher = self.chain.cipher
        if cipher is None:
            return candidate
        try:
            text = cipher.open_text(candidate.text, QUESTION_CONTEXT + candidate.key.encode())
        except DecryptError as exc:
            log.debug("semantic candidate %s does not decrypt (%s)", candidate.key, exc.reason)
            if self.metrics is not None:
                self.metrics.decrypt_failed("semantic", exc.reason)
            return None
        return replace(candidate, text=text)

    async def _veto(self, text: str, candidate: Candidate) -> RuleName | None:
        if self.guard is None:
            return None
        # Off the loop: a long text costs milliseconds to analyse (two windows of
        # WINDOW_CHARS), and a swap between sentences embeds them.
        with tracing.span(tracing.SEMANTIC_GUARD, {tracing.SIMILARITY: candidate.similarity}) as traced:
            rule = await asyncio.to_thread(self.guard.veto, text, candidate.text, candidate.similarity)
            if traced is not None:
                traced.set_attribute(tracing.VETO, str(rule) if rule is not None else "")
        return rule

    async def remember(self, asked: Asked, key: str, ttl_s: float | None) -> None:
        if asked.embedding is None:
            return  # the embedding failed at lookup; nothing to index
        try:
            await self.index.add(self._vector(asked, key, ttl_s))
        except Exception as exc:
            log.warning("semantic remember failed: %r", exc)

    def _vector(self, asked: Asked, key: str, ttl_s: float | None) -> Vector:
        assert asked.embedding is not None
        text = asked.question.text
        if self.chain.cipher is not None:
            text = self.chain.cipher.seal_text(text, QUESTION_CONTEXT + key.encode())
        return Vector(key, text, asked.fingerprint, asked.namespace, asked.embedding, ttl_s)

    async def learn(self, asked: Asked, key: str, ttl_s: float | None, authorization: str | None) -> bool:
        """Index an answer stored without a lookup before it (a seeded one): its question is
        embedded first. Whether it was indexed (a failure is logged, never raised)."""
        try:
            async with asyncio.timeout(self.settings.timeout_s + self.settings.embedding.timeout_s):
                asked.embedding = await self.embed(asked.question.text, authorization)
                if not self._opened:
                    await self._open(len(asked.embedding))
                await self.index.add(self._vector(asked, key, ttl_s))
        except Exception as exc:
            log.warning("semantic indexing of a seeded answer failed: %r", exc)
            return False
        return True

    async def clear(self, namespace: str | None) -> None:
        try:
            await self.index.clear(namespace)
        except Exception as exc:
            log.warning("semantic flush failed: %r", exc)

    async def ping(self) -> dict[str, Any]:
        latency_ms, error = await probe(self.index.ping, 2.0)
        return {"type": self.index.type, "ok": error is None, "latency_ms": latency_ms, "error": error}

    async def close(self) -> None:
        await self.index.close()
