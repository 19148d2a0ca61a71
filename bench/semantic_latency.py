"""Semantic lookup latency with 1k, 10k and 100k entries in one context.

    .venv/bin/python -m bench.semantic_latency                  # embedded index and RediSearch, ~10 min
    .venv/bin/python -m bench.semantic_latency --stores matrix  # embedded index only, ~1 min
    .venv/bin/python -m bench.semantic_latency --stores matrix,redis,qdrant-client
    .venv/bin/python -m bench.semantic_latency --hop            # search alone: on the loop vs a worker thread

qdrant-client is its local mode, the embedded index before issue 14, measured up to 10k
entries only (100k would take most of an hour).

Builds the real semantic cache (in-process all-MiniLM-L6-v2, the guard, a memory tier
holding the answers) on each vector store and fills ONE context fingerprint: 140 real
questions stored through the cache, the rest random unit vectors (never similar enough to
match). At 1k, 10k and 100k entries it times `SemanticCache.lookup` (embedding + search +
guard + exact-tier read) for 280 paraphrases of the stored questions (hits) and 140 new
questions (misses), interleaved, and prints p50/p99; then the same vector searches alone
(`index.search`, embeddings computed beforehand). Redis is a RediSearch test server
from tests/servers.py. The table is written to bench/results/semantic_latency.md.
Target (issue 14): p50 < 10 ms and p99 < 25 ms at 100k entries.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.background import Background
from app.codec import new_entry
from app.config import LocalTierSettings, QdrantSettings, SemanticSettings
from app.metrics import Metrics
from app.semantic.cache import SemanticCache
from app.semantic.factory import build_semantic
from app.semantic.index import Vector
from app.semantic.matrix import MatrixIndex, Rows
from app.semantic.qdrant import QdrantIndex
from app.tiers.chain import Chain
from app.tiers.guarded import GuardedTier
from app.tiers.local import LocalTier
from bench.procs import OtherLoad
from bench.report import machine, revision

RESULTS = Path(__file__).resolve().parent / "results" / "semantic_latency.md"
SIZES = (1_000, 10_000, 100_000)
STORES = ("matrix", "redis", "qdrant-client")
BEFORE_MAX = 10_000
PLANTED = 100
PLANTED_SIMILARITY = 0.85
TOPICS = [
    "the capital of {}",
    "the population of {}",
    "the currency used in {}",
    "the best time to visit {}",
    "the official language of {}",
    "the highest mountain in {}",
    "the national dish of {}",
]
PLACES = [
    "France",
    "Germany",
    "Japan",
    "Brazil",
    "Canada",
    "Kenya",
    "India",
    "Peru",
    "Norway",
    "Egypt",
    "Chile",
    "Spain",
    "Italy",
    "Mexico",
    "Vietnam",
    "Poland",
    "Ghana",
    "Nepal",
    "Ireland",
    "Greece",
]
CONTEXT = {"model": "gpt-4o", "temperature": 0}


def questions() -> list[str]:
    return [f"What is {topic.format(place)}?" for topic in TOPICS for place in PLACES]


def lookups() -> list[str]:
    """Two paraphrases of each stored question and one new question each, interleaved."""
    stored = questions()
    first = [t.replace("What is", "Tell me") for t in stored]
    second = [t.replace("What is", "Do you know") for t in stored]
    new = [f"How do I renew a passport issued in {place} before trip {n}?" for n in range(7) for place in PLACES]
    return [text for triple in zip(first, new, second, strict=True) for text in triple]


def percentiles(latencies: list[float]) -> str:
    if not latencies:
        return "— | —"
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{statistics.median(ordered):.2f} | {p99:.2f}"


@dataclass
class Row:
    store: str
    entries: int
    latencies: list[float]
    hits: int
    searches: list[float]
    recall: float | None
    fill_s: float

    def cells(self) -> str:
        found = "—" if self.recall is None else f"{self.recall:.2f}"
        return (
            f"| {self.store} | {self.entries:,} | {len(self.latencies)} | {self.hits} "
            f"| {percentiles(self.latencies)} | {percentiles(self.searches)} | {found} | {self.fill_s:.0f} |"
        )


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def ask(cache: SemanticCache, text: str) -> Any:
    payload = {**CONTEXT, "messages": [{"role": "user", "content": text}]}
    asked = cache.ask("chat_completions", "gpt-4o", payload, "scope", None)
    assert asked is not None
    return asked


async def store_questions(cache: SemanticCache, chain: Chain) -> str:
    """The real questions, answered once each; returns their context fingerprint."""
    fingerprint = ""
    for text in questions():
        asked = ask(cache, text)
        assert await cache.lookup(asked, None, 1.01, None) is None  # embeds; never matches
        key = uuid.uuid4().hex
        await chain.set(key, new_entry(b'{"answer": 1}', "application/json", 3600))
        await cache.remember(asked, key, 3600)
        fingerprint = asked.fingerprint
    return fingerprint


async def fill(cache: SemanticCache, fingerprint: str, count: int, seed: int) -> list[Vector]:
    """Random unit vectors; returns some of them, to plant near-duplicates of."""
    rng = np.random.default_rng(seed)
    batch = 64  # concurrent adds: Redis pipelines them over several connections
    kept: list[Vector] = []
    for start in range(0, count, batch):
        vectors = rng.standard_normal((min(batch, count - start), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        added = [
            Vector(uuid.uuid4().hex, f"filler {start + i}", fingerprint, None, v, 3600) for i, v in enumerate(vectors)
        ]
        await asyncio.gather(*(cache.index.add(vector) for vector in added))
        kept += added[: max(0, PLANTED - len(kept))]
    return kept


async def recall(cache: SemanticCache, vectors: list[Vector], seed: int) -> float:
    """Share of near-duplicates (cosine PLANTED_SIMILARITY to a stored vector) whose
    stored vector the search returns first: what an approximate search can miss."""
    rng = np.random.default_rng(seed)
    found = 0
    for vector in vectors:
        other = rng.standard_normal(384).astype(np.float32)
        other -= other.dot(vector.embedding) * vector.embedding
        other /= np.linalg.norm(other)
        query = PLANTED_SIMILARITY * vector.embedding + np.sqrt(1 - PLANTED_SIMILARITY**2) * other
        best = await cache.index.search(query, vector.fingerprint, 5, 0.5)
        found += bool(best) and best[0].key == vector.key
    return found / max(1, len(vectors))


async def timed(cache: SemanticCache) -> tuple[list[float], int]:
    latencies, hits = [], 0
    for text in lookups():
        asked = ask(cache, text)
        started = time.perf_counter()
        match = await cache.lookup(asked, None, None, None)
        latencies.append((time.perf_counter() - started) * 1000)
        hits += match is not None
    return latencies, hits


async def embedding_alone(cache: SemanticCache) -> tuple[list[float], list[np.ndarray]]:
    latencies, embeddings = [], []
    for text in lookups():
        started = time.perf_counter()
        embeddings.append(await cache.embed(text, None))
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, embeddings


async def searches(cache: SemanticCache, fingerprint: str, embeddings: list[np.ndarray]) -> list[float]:
    threshold, limit = cache.settings.threshold, cache.settings.candidates
    latencies = []
    for embedding in embeddings:
        started = time.perf_counter()
        await cache.index.search(embedding, fingerprint, limit, threshold)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def run(store: str, sizes: list[int], redis_url: str | None, notes: list[str]) -> list[Row]:
    semantic: dict[str, Any] = {"type": "redis" if store == "redis" else "qdrant"}
    semantic["embedding"] = {"local": "all-MiniLM-L6-v2"}
    if store == "redis":
        semantic["redis"] = {"url": redis_url, "index": f"bench-{uuid.uuid4().hex[:8]}"}
    semantic["qdrant"] = {"max_entries": max(sizes)}
    settings = SemanticSettings(**semantic)
    tier = LocalTier("local", 1_000_000, 1 << 30)
    chain = Chain([GuardedTier(tier, LocalTierSettings(type="local"), Metrics())], Background())
    cache = build_semantic(settings, None, None, chain, 3600)  # type: ignore[arg-type]
    if store == "qdrant-client":
        cache.index = QdrantIndex(QdrantSettings())  # local mode, in memory
    rows = []
    try:
        fingerprint = await store_questions(cache, chain)
        embedded, embeddings = await embedding_alone(cache)
        if store == "matrix":
            rows.append(Row("embedding alone", 0, embedded, 0, [], None, 0))
        stored = len(questions())
        gc.collect()
        before = rss_mb()
        planted: list[Vector] = []
        for size in sizes:
            started = time.perf_counter()
            planted = (planted + await fill(cache, fingerprint, size - stored, seed=size))[-PLANTED:]
            filled = time.perf_counter() - started
            stored = size
            latencies, hits = await timed(cache)
            alone = await searches(cache, fingerprint, embeddings)
            rows.append(Row(store, size, latencies, hits, alone, await recall(cache, planted, size), filled))
        if isinstance(cache.index, MatrixIndex):
            gc.collect()
            grown = rss_mb() - before
            notes.append(f"matrix index memory for {stored - len(questions()):,} added entries: {grown:.0f} MB RSS")
        if store == "redis":
            info = await cache.index.client.info("memory")  # type: ignore[attr-defined]
            notes.append(f"Redis used_memory with {stored:,} entries: {info['used_memory'] / 1e6:.0f} MB")
        return rows
    finally:
        await cache.clear(None)
        await cache.close()


def hop_table() -> list[str]:
    """The search alone, on the event loop and through a worker thread, by context size."""

    async def measure() -> list[str]:
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(2)
        rng = np.random.default_rng(0)
        lines = [
            "| rows | inline p50 ms | inline p99 ms | thread p50 ms | thread p99 ms |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        for n in (256, 1_024, 4_096, 8_192, 16_384, 100_000):
            rows = Rows(384, n)
            data = rng.standard_normal((n, 384)).astype(np.float32)
            data /= np.linalg.norm(data, axis=1, keepdims=True)
            for i in range(n):
                rows.append(i, f"k{i}", "t", None, data[i], np.inf)
            cells = []
            for in_thread in (False, True):
                latencies = []
                for i in range(500):
                    query, now = data[i % n], time.time()
                    started = time.perf_counter()
                    if in_thread:
                        await loop.run_in_executor(pool, rows.search, query, 5, 0.8, now)
                    else:
                        rows.search(query, 5, 0.8, now)
                    latencies.append((time.perf_counter() - started) * 1000)
                latencies.sort()
                cells += [f"{statistics.median(latencies):.3f}", f"{latencies[int(len(latencies) * 0.99)]:.3f}"]
            lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
        pool.shutdown()
        return lines

    return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="matrix,redis", help=f"comma-separated, of {', '.join(STORES)}")
    parser.add_argument("--hop", action="store_true", help="only the search, inline vs in a worker thread")
    args = parser.parse_args()
    if args.hop:
        print("\n".join(hop_table()))
        return
    stores = [s for s in STORES if s in args.stores.split(",")]
    notes: list[str] = []
    rows: list[Row] = []
    other = OtherLoad()
    other.start()
    for store in stores:
        if store == "redis":
            from tests import servers

            with servers.redis_server(modules=True) as server:
                rows += asyncio.run(run(store, list(SIZES), server.url, notes))
        else:
            sizes = [s for s in SIZES if store != "qdrant-client" or s <= BEFORE_MAX]
            rows += asyncio.run(run(store, sizes, None, notes))
    load = other.stop()
    header = [
        f"# Semantic lookup latency — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"- machine: {machine()}; code: {revision()}",
        f"- other load on the machine during the run: {load:.2f} CPUs on average",
        f"- command: `.venv/bin/python -m bench.semantic_latency --stores {','.join(stores)}`",
        "- one context; lookups: 280 paraphrases of stored questions (hits) and 140 new questions (misses),",
        "  each timed around `SemanticCache.lookup` (embedding + search + guard + exact-tier read)",
        "- search: the same vector searches alone; recall: share of 100 near-duplicates (cosine 0.85 to a",
        "  stored random vector) whose vector is found first; fill s: time to add the entries since the row above",
        "- target at 100k entries: p50 < 10 ms, p99 < 25 ms (lookup)",
        "",
        "| store | entries | lookups | hits | lookup p50 ms | lookup p99 ms | search p50 ms | search p99 ms "
        "| recall | fill s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    report = header + [row.cells() for row in rows] + [""] + [f"- {note}" for note in notes]
    print("\n".join(report))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
