"""Server-side CPU per cache hit, through uvicorn's HTTP protocol, in-process: the bare app
(row a) and llmcache (row b) each fed the hit request's bytes on a connection whose
transport only collects what is written. No sockets, no load generator: what is left is
the Python work per request on each side (parsing, the ASGI cycle, the app), the part of
row b/a's ratio the code decides. `--profile` prints cProfile's top functions for
llmcache's side (the table in docs/benchmarks.md).

    .venv/bin/python -m bench.server_cpu [--requests 20000] [--rounds 3] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import time
from typing import Any

import httpx
import orjson
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.config import Settings
from app.protocol import protocol_class
from app.server import LLMCache, create_app
from bench.bare_app import BareApp
from bench.bodies import chat_body
from bench.cpu_per_call import ANSWER


class Collecting:
    """A connection's transport that keeps what is written and says when."""

    def __init__(self) -> None:
        self.written = asyncio.Event()
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)
        self.written.set()

    def writelines(self, chunks: Any) -> None:
        self.out.extend(chunks)
        self.written.set()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def write_eof(self) -> None: ...


def request_bytes(body: bytes) -> bytes:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:8080\r\ncontent-type: application/json\r\n"
    return head + b"content-length: %d\r\n\r\n" % len(body) + body


class Connection:
    def __init__(self, app: Any, protocol: type[asyncio.Protocol]) -> None:
        config = uvicorn.Config(app, http=protocol, loop="none", access_log=False, lifespan="off")
        config.load()
        state = ServerState()
        state.default_headers = [(b"date", b"Sun, 06 Dec 2026 03:00:00 GMT"), (b"server", b"uvicorn")]
        self.protocol: Any = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop()
        )
        self.transport = Collecting()
        self.protocol.connection_made(self.transport)

    async def exchange(self, data: bytes) -> bytes:
        """One request; the response's bytes once they are whole (content-length)."""
        transport = self.transport
        transport.out.clear()
        self.protocol.data_received(data)
        while True:
            transport.written.clear()
            response = b"".join(transport.out)
            head, _, body = response.partition(b"\r\n\r\n")
            if _:
                fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
                if len(body) >= int(fields[b"content-length"]):
                    return response
            await transport.written.wait()

    async def cpu_per_request(self, data: bytes, count: int) -> float:
        gc.collect()
        started = time.process_time()
        for _ in range(count):
            await self.exchange(data)
        return (time.process_time() - started) / count * 1e6


async def proxy_app() -> LLMCache:
    answer = orjson.dumps(ANSWER)

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "application/json"}, content=answer)

    settings = Settings(upstream={"base_url": "http://up.invalid/v1"}, cache={"tiers": [{"type": "local"}]})
    app = create_app(settings, httpx.MockTransport(upstream))
    await app.startup()
    return app


async def main(requests: int, rounds: int, profile: bool) -> None:
    app = await proxy_app()
    data = request_bytes(chat_body("hit"))
    proxy = Connection(app, protocol_class(app.settings.server))
    for _ in range(200):  # stored, remembered, warm
        hit = await proxy.exchange(data)
    bare = Connection(BareApp(hit.partition(b"\r\n\r\n")[2]), HttpToolsProtocol)
    for _ in range(200):
        await bare.exchange(data)
    best = {"a": float("inf"), "b": float("inf")}
    for _ in range(rounds):
        best["a"] = min(best["a"], await bare.cpu_per_request(data, requests))
        best["b"] = min(best["b"], await proxy.cpu_per_request(data, requests))
    print(f"CPU per request, minimum of {rounds} rounds of {requests}:")
    print(
        f"  a (bare app): {best['a']:.2f} µs   b (llmcache hit): {best['b']:.2f} µs   a/b: {best['a'] / best['b']:.3f}"
    )
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(requests):
            await proxy.exchange(data)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    await app.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    uvloop.run(main(args.requests, args.rounds, args.profile))
