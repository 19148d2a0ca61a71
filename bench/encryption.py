"""What encryption at rest costs a hit: 2 KB answers, with and without `cache.encryption`,
side by side in one run, on each tier where it applies.

    .venv/bin/python -m bench.encryption [--rounds 7] [--hits 5000]

Each configuration is one app driven in-process through ASGI (as bench/cpu_per_call.py
does: no network, no load generator), answering the same chat request from its cache
over and over. Tiers: `local` alone (held in plaintext by design: the figure shows that
turning encryption on leaves it alone), `disk` alone and `redis` alone (a real
redis-server from tests/servers.py), where every hit decrypts. Rounds interleave the
configurations; per side the minimum is kept (noise only adds time), and the ratios are
the median over rounds of each round's back-to-back pair.
CPU counts every thread of the process (the disk tier reads in a thread pool); hits/s
is one client's sequential rate, 1 / wall time per hit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from app.config import Settings
from app.server import LLMCache, create_app
from bench.bodies import FILLER, chat_body

ANSWER_BYTES = 2048
KEY = base64.b64encode(os.urandom(32)).decode()


def answer() -> bytes:
    """A chat completion of ANSWER_BYTES, its content prose (not one repeated byte)."""
    document: dict[str, Any] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 200, "completion_tokens": 400, "total_tokens": 600},
    }
    filler = FILLER * (ANSWER_BYTES // len(FILLER) + 1)
    empty = len(orjson.dumps(document))
    document["choices"][0]["message"]["content"] = filler[: ANSWER_BYTES - empty]
    body = orjson.dumps(document)
    assert len(body) == ANSWER_BYTES
    return body


class Driver:
    """One app and a loop calling it with the same request."""

    def __init__(self, app: LLMCache, label: str) -> None:
        self.app = app
        self.label = label
        self.body = chat_body("encryption bench")
        self.headers = [
            (b"host", b"x"),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer sk-bench"),
            (b"content-length", str(len(self.body)).encode()),
        ]
        self.statuses: list[bytes] = []

    async def call(self) -> None:
        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": self.headers}
        scope["query_string"] = b""
        body = self.body

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.statuses.append(dict(message["headers"]).get(b"x-cache-status", b""))

        await self.app(scope, receive, send)

    async def measure(self, hits: int) -> tuple[float, float]:
        """(CPU µs, wall µs) per hit."""
        self.statuses.clear()
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(hits):
            await self.call()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert self.statuses == [b"hit"] * hits, (self.label, {s: self.statuses.count(s) for s in set(self.statuses)})
        return cpu / hits * 1e6, wall / hits * 1e6


async def start(tier: dict[str, Any], encrypted: bool) -> Driver:
    body = answer()

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "application/json"}, content=body)

    cache: dict[str, Any] = {"tiers": [tier]}
    if encrypted:
        cache["encryption"] = {"key": KEY}
    settings = Settings(upstream={"base_url": "http://up.invalid/v1"}, cache=cache)
    app = create_app(settings, httpx.MockTransport(upstream))
    await app.startup()
    driver = Driver(app, f"{tier['type']} encrypted={encrypted}")
    await driver.call()  # the miss that stores the answer
    assert app.runtime is not None
    await app.runtime.chain.drain()
    return driver


@contextlib.contextmanager
def redis_url(enabled: bool) -> Iterator[str | None]:
    if not enabled:
        yield None
        return
    from tests import servers

    with servers.redis_server() as info:
        yield info.url


def codec_costs(repeat: int = 200_000) -> tuple[float, float, float, float]:
    """µs to encode and to decode a 2 KB entry: plaintext, then sealed (minimum of 5)."""
    from app.codec import Usage, decode, encode, new_entry
    from app.encryption import Cipher, parse_key

    cipher = Cipher([parse_key(KEY)])
    entry = new_entry(answer(), "application/json", 3600, Usage(600))
    key = "0" * 64
    plain, sealed = encode(entry), encode(entry, None, cipher, key)

    def best(work: Any) -> float:
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(repeat):
                work()
            timings.append(time.perf_counter() - started)
        return min(timings) / repeat * 1e6

    return (
        best(lambda: encode(entry)),
        best(lambda: encode(entry, None, cipher, key)),
        best(lambda: decode(plain)),
        best(lambda: decode(sealed, cipher, key)),
    )


async def run(rounds: int, hits: int, with_redis: bool) -> None:
    with tempfile.TemporaryDirectory() as directory, redis_url(with_redis) as url:
        tiers: dict[str, dict[str, Any]] = {
            "local": {"type": "local"},
            "disk": {"type": "disk", "path": directory},
        }
        if url is not None:
            # The default 0.1 s read timeout turns a scheduling hiccup (two CPUs shared with
            # redis-server) into a miss now and then; this measures hits.
            tiers["redis"] = {"type": "redis", "url": url, "timeout_s": 1.0}
        drivers: dict[tuple[str, bool], Driver] = {}
        for name, tier in tiers.items():
            for encrypted in (False, True):
                # Apart: one configuration's entry would be a miss for the other.
                settings = dict(tier)
                if name == "disk":
                    settings["path"] = os.path.join(directory, f"encrypted-{encrypted}")
                elif name == "redis":
                    settings["prefix"] = f"bench-encrypted-{encrypted}:"
                drivers[(name, encrypted)] = await start(settings, encrypted)
        # Per round and tier, plain and encrypted back to back (in alternating order): the
        # ratio of such a pair sees the same machine load on both sides.
        best: dict[tuple[str, bool], tuple[float, float]] = {}
        ratios: dict[str, list[tuple[float, float]]] = {name: [] for name in tiers}
        for number in range(rounds):
            for name in tiers:
                order = (False, True) if number % 2 else (True, False)
                pair = {encrypted: await drivers[(name, encrypted)].measure(hits) for encrypted in order}
                ratios[name].append((pair[True][0] / pair[False][0], pair[False][1] / pair[True][1]))
                for encrypted, (cpu, wall) in pair.items():
                    kept = best.get((name, encrypted), (cpu, wall))
                    best[(name, encrypted)] = (min(kept[0], cpu), min(kept[1], wall))
        for driver in drivers.values():
            await driver.app.shutdown()
    print(
        f"2 KB answers, {hits} hits per side per round, {rounds} rounds; minimum per side, median of per-round ratios\n"
    )
    print(
        "| tier | CPU per hit, plain (µs) | encrypted (µs) | CPU ratio | hits/s, plain | encrypted | throughput ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in tiers:
        (cpu_plain, wall_plain), (cpu_sealed, wall_sealed) = best[(name, False)], best[(name, True)]
        cpu_ratio = statistics.median(r[0] for r in ratios[name])
        throughput_ratio = statistics.median(r[1] for r in ratios[name])
        print(
            f"| {name} | {cpu_plain:.2f} | {cpu_sealed:.2f} | {cpu_ratio:.3f}× "
            f"| {1e6 / wall_plain:,.0f} | {1e6 / wall_sealed:,.0f} | {throughput_ratio:.3f}× |"
        )
    encode_plain, encode_sealed, decode_plain, decode_sealed = codec_costs()
    print("\nThe codec alone, one 2 KB entry (minimum of 5 runs):\n")
    print("| step | plain (µs) | encrypted (µs) | added (µs) |")
    print("| --- | --- | --- | --- |")
    print(f"| encode (write) | {encode_plain:.2f} | {encode_sealed:.2f} | {encode_sealed - encode_plain:.2f} |")
    print(f"| decode (hit) | {decode_plain:.2f} | {decode_sealed:.2f} | {decode_sealed - decode_plain:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--hits", type=int, default=5_000)
    parser.add_argument("--no-redis", action="store_true", help="skip the redis tier")
    args = parser.parse_args()
    asyncio.run(run(args.rounds, args.hits, not args.no_redis))


if __name__ == "__main__":
    main()
