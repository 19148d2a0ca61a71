"""What a semantic lookup adds to a request: `python -m bench.semantic_latency`.

Builds the real semantic cache (in-process all-MiniLM-L6-v2, embedded Qdrant or a real
RediSearch, the guard, a memory tier holding the answers), fills it with entries in
several contexts, then times `lookup` for paraphrases (hits) and for new questions
(misses): embedding + filtered vector search + guard + exact-tier read. Prints p50/p99.
Target: p50 under 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from app.background import Background
from app.codec import new_entry
from app.config import LocalTierSettings, SemanticSettings
from app.metrics import Metrics
from app.semantic.cache import SemanticCache
from app.semantic.factory import build_semantic
from app.tiers.chain import Chain
from app.tiers.guarded import GuardedTier
from app.tiers.local import LocalTier

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


def questions() -> list[str]:
    return [f"What is {topic.format(place)}?" for topic in TOPICS for place in PLACES]


async def fill(cache: SemanticCache, chain: Chain, contexts: int) -> None:
    """Every question answered once in each context, like a cache after some traffic."""
    for context in range(contexts):
        for text in questions():
            payload = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], "seed": context}
            asked = cache.ask("chat_completions", "gpt-4o", payload, "scope", None)
            assert asked is not None
            match = await cache.lookup(asked, None, 1.01, None)  # embeds; never matches
            assert match is None
            key = uuid.uuid4().hex
            await chain.set(key, new_entry(b'{"answer": 1}', "application/json", 3600))
            await cache.remember(asked, key, 3600)


async def timed(cache: SemanticCache, texts: list[str], context: int) -> tuple[list[float], int]:
    latencies = []
    hits = 0
    for text in texts:
        payload = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], "seed": context}
        asked = cache.ask("chat_completions", "gpt-4o", payload, "scope", None)
        assert asked is not None
        started = time.perf_counter()
        match = await cache.lookup(asked, None, None, None)
        latencies.append((time.perf_counter() - started) * 1000)
        hits += match is not None
    return latencies, hits


def summary(name: str, latencies: list[float], hits: int) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"| {name} | {len(ordered)} | {hits} | {statistics.median(ordered):.2f} | {p99:.2f} |"


async def run(store: str, redis_url: str | None, contexts: int) -> list[str]:
    semantic = {"type": store, "embedding": {"local": "all-MiniLM-L6-v2"}}
    if store == "redis":
        semantic["redis"] = {"url": redis_url, "index": f"bench-{uuid.uuid4().hex[:8]}"}
    settings = SemanticSettings(**semantic)
    tier = LocalTier("local", 1_000_000, 1 << 30)
    chain = Chain([GuardedTier(tier, LocalTierSettings(type="local"), Metrics())], Background())
    cache = build_semantic(settings, None, None, chain, 3600)  # type: ignore[arg-type]
    try:
        await fill(cache, chain, contexts)
        paraphrases = [t.replace("What is", "Tell me") for t in questions()]
        new = [f"How do I renew a passport issued in {place} number {n}?" for n in range(7) for place in PLACES]
        hit_latency, hits = await timed(cache, paraphrases, context=0)
        miss_latency, misses_hit = await timed(cache, new, context=1)
        return [
            summary(f"{store}: paraphrase lookups", hit_latency, hits),
            summary(f"{store}: new-question lookups", miss_latency, misses_hit),
        ]
    finally:
        await cache.clear(None)
        await cache.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contexts", type=int, default=5, help="contexts the cache is filled with")
    parser.add_argument("--redis", action="store_true", help="also measure RediSearch (starts a test server)")
    args = parser.parse_args()
    rows = ["| lookups | n | hits | p50 ms | p99 ms |", "| --- | ---: | ---: | ---: | ---: |"]
    rows += asyncio.run(run("qdrant", None, args.contexts))
    if args.redis:
        from tests import servers

        with servers.redis_server(modules=True) as server:
            rows += asyncio.run(run("redis", server.url, args.contexts))
    entries = len(questions()) * args.contexts
    print(f"Semantic lookup latency, {entries} entries in {args.contexts} contexts, local embedder\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
