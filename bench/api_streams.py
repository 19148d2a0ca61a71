"""The newer APIs against chat, side by side in one run: what a hit costs llmcache's own
process (CPU seconds per hit, from /proc), and the time to first event that llmcache adds
to a streamed miss (direct and proxied requests interleaved, paired by request).

    .venv/bin/python -m bench.api_streams            # about a minute
    .venv/bin/python -m bench.api_streams --quick

Servers are placed as bench.run places them (llmcache on the first CPU, the fake upstream
and this client on the second).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import procs, streaming
from bench.bodies import chat_body
from bench.procs import Placement, Processes, free_port
from bench.rows import percentile
from bench.run import start_proxy

QUESTION = "Question {marker}: " + "how does a caching proxy decide that two requests are the same? " * 14
SHORT_TOKENS = 2
ANTHROPIC = {"x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01"}
APIS: dict[str, tuple[str, dict[str, str]]] = {
    "chat": ("/v1/chat/completions", {"authorization": "Bearer sk-bench"}),
    "responses": ("/v1/responses", {"authorization": "Bearer sk-bench"}),
    "messages": ("/v1/messages", ANTHROPIC),
}


def body(api: str, marker: str, stream: bool, short: bool = False) -> bytes:
    """About 1 KB of request; `short`: an answer of two tokens (see row e′ in bench.run:
    a long stream keeps the fake upstream writing on the CPU the client shares with it)."""
    if api == "chat":
        return chat_body(marker, stream=stream, max_tokens=SHORT_TOKENS if short else None)
    text = QUESTION.format(marker=marker)
    if api == "responses":
        limit = {"max_output_tokens": SHORT_TOKENS} if short else {}
        return orjson.dumps({"model": "gpt-4o-mini", "input": text, "stream": stream, **limit})
    tokens = SHORT_TOKENS if short else 256
    message = {"role": "user", "content": text}
    return orjson.dumps({"model": "claude-sonnet-4-5", "max_tokens": tokens, "stream": stream, "messages": [message]})


def hit_cpu_us(proxy: procs.Server, api: str, hits: int) -> float:
    path, headers = APIS[api]
    request = body(api, f"hit-{secrets.token_hex(4)}", stream=False)
    with httpx.Client(base_url=proxy.url, headers={**headers, "content-type": "application/json"}) as http:
        first = http.post(path, content=request)
        assert first.status_code == 200, first.text[:300]
        assert http.post(path, content=request).headers["x-cache-status"] == "hit"
        before = sum(procs.cpu_seconds(proxy.process.pid).values())
        for _ in range(hits):
            http.post(path, content=request)
        spent = sum(procs.cpu_seconds(proxy.process.pid).values()) - before
    return spent / hits * 1e6


async def ttfb(fake: procs.Server, proxy: procs.Server, api: str, count: int, short: bool) -> dict[str, float]:
    path, headers = APIS[api]
    direct: list[float] = []
    proxied: list[float] = []
    nonce = secrets.token_hex(4)
    for number in range(count):
        request = body(api, f"{nonce}-{number}", stream=True, short=short)
        order = ((fake, direct), (proxy, proxied)) if number % 2 else ((proxy, proxied), (fake, direct))
        for server, into in order:
            result = await streaming.stream_once(server.port, request, headers, path)
            if result.status != 200 or (server is proxy and result.headers.get("x-cache-status") != "miss"):
                raise procs.BenchError(f"{api} via {server.name}: {result.status} {result.body[:200]!r}")
            into.append(result.ttfb_ms)
    return {
        "direct_p50_ms": percentile(direct, 50),
        "proxy_p50_ms": percentile(proxied, 50),
        "overhead_p50_ms": percentile([p - d for p, d in zip(proxied, direct)], 50),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    hits, streams = (500, 40) if args.quick else (3000, 200)
    placement = Placement.detect()
    work = Path(tempfile.mkdtemp(prefix="llmcache-api-bench-"))
    with Processes(work) as running:
        port = free_port()
        fake_argv = placement.pin(
            placement.load, [sys.executable, "-m", "tests.fake_upstream", "--host", "127.0.0.1", "--port", str(port)]
        )
        fake = running.start("fake-upstream", fake_argv, port, "/_stats")
        config = work / "local.yaml"
        config.write_text(
            f"upstream: {{base_url: '{fake.url}/v1', timeout_s: 30}}\ncache: {{tiers: [{{type: local}}]}}\n"
        )
        proxy = start_proxy(running, placement, "llmcache", config)
        placement.pin_self_to_load()
        rows: dict[str, dict[str, Any]] = {}
        for api in APIS:
            rows[api] = {"hit_cpu_us": hit_cpu_us(proxy, api, hits)}
            rows[api].update(asyncio.run(ttfb(fake, proxy, api, streams, short=False)))
            short = asyncio.run(ttfb(fake, proxy, api, streams, short=True))
            rows[api].update({f"{name}_short": value for name, value in short.items()})
    chat = rows["chat"]["hit_cpu_us"]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {hits} hits and {streams} streamed misses per API\n")
    print(
        "| API | CPU per hit (µs) | × chat | TTFB direct / via llmcache p50 | added p50 (paired) | short stream: added p50 |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for api, row in rows.items():
        print(
            f"| {api} | {row['hit_cpu_us']:.1f} | {row['hit_cpu_us'] / chat:.2f}× | {row['direct_p50_ms']:.3f} / "
            f"{row['proxy_p50_ms']:.3f} ms | {row['overhead_p50_ms']:.3f} ms | {row['overhead_p50_ms_short']:.3f} ms |"
        )


if __name__ == "__main__":
    main()
