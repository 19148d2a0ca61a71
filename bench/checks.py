"""Small HTTP probes that keep the figures honest: a hit row must be serving hits.

They read the proxy's own request counts (`GET /cache/stats`, admin token) and the fake
upstream's call count (`GET /_stats`) before and after each run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from bench.bodies import PATH
from bench.procs import BenchError, Server

ADMIN_TOKEN = "bench-admin-token"
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Reply:
    status: int
    cache_status: str | None
    body: bytes


def post(server: Server, body: bytes) -> Reply:
    response = httpx.post(
        server.url + PATH, content=body, timeout=TIMEOUT_S, headers={"content-type": "application/json"}
    )
    return Reply(response.status_code, response.headers.get("x-cache-status"), response.content)


def expect(server: Server, body: bytes, cache_status: str | None) -> bytes:
    """POST `body`, require 200 (and the given x-cache-status); the response body."""
    reply = post(server, body)
    if reply.status != 200:
        raise BenchError(f"{server.name}: expected 200, got {reply.status}: {reply.body[:300]!r}")
    if cache_status is not None and reply.cache_status != cache_status:
        raise BenchError(f"{server.name}: expected x-cache-status {cache_status}, got {reply.cache_status}")
    return reply.body


def _stats(proxy: Server) -> dict[str, Any]:
    response = httpx.get(
        f"{proxy.url}/cache/stats", timeout=TIMEOUT_S, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def proxy_counts(proxy: Server) -> dict[str, int]:
    """Requests by cache status; with several workers, the sum over all of them."""
    counts: dict[str, int] = _stats(proxy)["requests"]
    return counts


def tier_types(proxy: Server) -> list[str]:
    return [tier["type"] for tier in _stats(proxy)["tiers"]]


def upstream_calls(fake: Server) -> int:
    response = httpx.get(f"{fake.url}/_stats", timeout=TIMEOUT_S)
    response.raise_for_status()
    return int(response.json()["calls"]["chat_completions"])


def difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {status: after.get(status, 0) - before.get(status, 0) for status in after}


def require_served(name: str, counted: int, completed: int, slack: int) -> None:
    """`counted` (server side) must cover the `completed` requests wrk saw, give or take the
    requests still in flight when wrk stopped."""
    if not completed <= counted <= completed + slack:
        raise BenchError(f"{name}: wrk completed {completed} requests but the server counted {counted}")
