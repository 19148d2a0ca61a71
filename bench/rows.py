"""The measurement steps of one round. Each returns plain figures; run.py repeats the round.

Rows: a bare app, b llmcache hits, l LiteLLM's proxy hits, c fake upstream direct, d llmcache misses (local
tier), dd llmcache misses (local+disk), e streamed-miss TTFB, f coalescing burst, g hits
from a Redis-only proxy, h hit throughput of 2 workers against 1. A row may take
several steps (a and b: under load, then unloaded; e: long, then short streams; h:
plain, then pipelined); their figures are merged.
"""

from __future__ import annotations

import asyncio
import math
import resource
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bench import checks, redisbench, streaming
from bench.bodies import MARKER, PATH, chat_body, fill
from bench.procs import BenchError, Placement, Server, connections_by_pid, cpu_seconds, idle_cpu_seconds
from bench.wrk import WrkResult, run_wrk

LOAD_CONNECTIONS = 32
SCALING_CONNECTIONS = 64  # row h
# Row h: N workers need N CPUs. The servers run on the first two; wrk on a third if the
# machine has one, else on both at the lowest priority (Placement.pin_scaling_load).
# Both worker counts get the same placement, so the ratio stays fair.
# Row h's second variant (h′): wrk pipelines this many requests per connection (HTTP/1.1).
# wrk then spends less CPU per request, which leaves more of the two CPUs to the workers.
PIPELINE_DEPTH = 8
Figures = dict[str, float]
T = TypeVar("T")


@dataclass
class Rig:
    """The running servers and the files wrk reads; built once by run.py."""

    placement: Placement
    fake: Server
    proxy: Server
    proxy_disk: Server | None
    bare: Server | None
    hit_file: Path
    miss_template_file: Path
    duration_s: float
    stream_requests: int
    burst: int
    burst_delay_ms: int
    proxy_redis: Server | None = None  # row g: tiers [redis] only
    redis: redisbench.RedisServer | None = None
    workers: dict[int, Server] = field(default_factory=dict)  # row h: worker count -> server
    litellm: Server | None = None  # row l: LiteLLM's proxy, its local cache warm

    @property
    def wrk_pin(self) -> list[str]:
        return self.placement.pin(self.placement.load, [])

    def wrk(
        self,
        server: Server,
        script: str,
        connections: int,
        duration_s: float | None = None,
        pin: list[str] | None = None,
        pipeline: int = 1,
    ) -> WrkResult:
        unique = script == "unique.lua"
        return run_wrk(
            server.url + PATH,
            script,
            self.miss_template_file if unique else self.hit_file,
            connections,
            duration_s or self.duration_s,
            self.wrk_pin if pin is None else pin,
            nonce=secrets.token_hex(6) if unique else "",
            pipeline=pipeline,
        )


# --- wrk rows -----------------------------------------------------------------------------


def loaded(rig: Rig, server: Server) -> Figures:
    """Throughput with 32 connections sending the same request."""
    return {"rps_c32": rig.wrk(server, "fixed.lua", LOAD_CONNECTIONS).rps}


def single(rig: Rig, server: Server, script: str) -> tuple[Figures, WrkResult]:
    """Unloaded latency: one connection, one request at a time."""
    run = rig.wrk(server, script, 1)
    return {"rps_c1": run.rps, "p50_ms": run.p50_ms, "p99_ms": run.p99_ms}, run


def bare(rig: Rig) -> Server:
    assert rig.bare is not None
    return rig.bare


def hits(rig: Rig, measure: Callable[[], Figures]) -> Figures:
    """`measure` against the proxy, refusing the figures if anything but hits was served."""
    before = checks.proxy_counts(rig.proxy)
    figures = measure()
    only_hits(rig.proxy, checks.difference(checks.proxy_counts(rig.proxy), before))
    return figures


def only_hits(proxy: Server, delta: dict[str, int]) -> None:
    if delta["miss"] or delta["bypass"] or delta["refresh"]:
        raise BenchError(f"hit row on {proxy.name} served non-hits: {delta}")


def peer(rig: Rig, measure: Callable[[Server], Figures]) -> Figures:
    """`measure` against LiteLLM's proxy, refusing the figures if it called the upstream
    (a request its cache did not answer)."""
    assert rig.litellm is not None
    checks.expect(rig.litellm, rig.hit_file.read_bytes(), None)  # stored again, should it have gone
    calls = checks.upstream_calls(rig.fake)
    figures = measure(rig.litellm)
    called = checks.upstream_calls(rig.fake) - calls
    if called:
        raise BenchError(f"hit row on {rig.litellm.name} made {called} upstream calls")
    return figures


def direct(rig: Rig) -> Figures:
    calls = checks.upstream_calls(rig.fake)
    figures, run = single(rig, rig.fake, "unique.lua")
    checks.require_served("fake upstream", checks.upstream_calls(rig.fake) - calls, run.requests, 1)
    return figures


def misses(rig: Rig, proxy: Server | None) -> Figures:
    """Unloaded latency of misses; every request must have been a miss and an upstream call."""
    assert proxy is not None
    before, calls = checks.proxy_counts(proxy), checks.upstream_calls(rig.fake)
    figures, run = single(rig, proxy, "unique.lua")
    delta = checks.difference(checks.proxy_counts(proxy), before)
    if delta["hit"]:
        raise BenchError(f"miss row on {proxy.name} served {delta['hit']} hits")
    checks.require_served(f"{proxy.name} misses", delta["miss"], run.requests, 1)
    checks.require_served(f"{proxy.name} upstream calls", checks.upstream_calls(rig.fake) - calls, run.requests, 1)
    return figures


# --- Redis and workers -------------------------------------------------------------------


def redis_hits(rig: Rig) -> Figures:
    """Row g. Back to back: a local-tier hit (row b's proxy and request), the same request
    hitting a proxy whose only tier is Redis, then one Redis round trip measured alone."""
    proxy, redis = rig.proxy_redis, rig.redis
    assert proxy is not None and redis is not None
    counts = checks.proxy_counts(rig.proxy)
    (local, local_run), local_cpu = _with_cpu(rig.proxy, lambda: single(rig, rig.proxy, "fixed.lua"))
    only_hits(rig.proxy, checks.difference(checks.proxy_counts(rig.proxy), counts))
    counts, reads = checks.proxy_counts(proxy), redisbench.keyspace_hits(redis)
    (figures, run), cpu = _with_cpu(proxy, lambda: single(rig, proxy, "fixed.lua"))
    delta = checks.difference(checks.proxy_counts(proxy), counts)
    only_hits(proxy, delta)
    checks.require_served(f"{proxy.name} hits", delta["hit"], run.requests, 1)
    # Every hit was read from Redis (Redis's own count), once: no tier in front of it.
    checks.require_served(f"{proxy.name} Redis reads", redisbench.keyspace_hits(redis) - reads, run.requests, 1)
    placement = rig.placement
    return {
        "local_p50_ms": local["p50_ms"],
        **figures,
        # The proxy runs on the server CPU and Redis on the load CPU, so the round trip
        # the proxy pays crosses CPUs: measure it from the proxy's CPU (idle meanwhile).
        "rtt_p50_ms": redisbench.rtt_p50_ms(redis, placement.pin(placement.server, [])),
        "rtt_same_cpu_p50_ms": redisbench.rtt_p50_ms(redis, placement.pin(placement.load, [])),
        # The proxy's own CPU time per request (one connection, so wake-ups included).
        "local_cpu_us_per_hit": local_cpu / local_run.requests * 1e6,
        "cpu_us_per_hit": cpu / run.requests * 1e6,
    }


def _with_cpu(server: Server, measure: Callable[[], T]) -> tuple[T, float]:
    """`measure()`, and the CPU seconds `server` (with its workers) used meanwhile."""
    before = cpu_seconds(server.process.pid)
    result = measure()
    after = cpu_seconds(server.process.pid)
    return result, sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def scaling(rig: Rig) -> Figures:
    """Row h: hit throughput with 64 connections, --workers 1 then --workers 2."""
    figures: Figures = {}
    for count, server in sorted(rig.workers.items()):
        figures.update({f"{name}_w{count}": value for name, value in workers_run(rig, server).items()})
    return figures


def scaling_pipelined(rig: Rig) -> Figures:
    """Row h, second variant (its own step, right after the first): the same, but wrk
    pipelines PIPELINE_DEPTH requests per connection. Figures end in `_pipe`."""
    figures: Figures = {}
    for count, server in sorted(rig.workers.items()):
        run = workers_run(rig, server, pipeline=PIPELINE_DEPTH)
        figures.update({f"{name}_w{count}_pipe": value for name, value in run.items()})
    return figures


def workers_run(rig: Rig, server: Server, duration_s: float | None = None, pipeline: int = 1) -> Figures:
    """One wrk run on both CPUs; only hits, all counted; the server's and wrk's CPU time."""
    pin = rig.placement.pin_scaling_load([])
    script = "fixed.lua" if pipeline == 1 else "pipeline.lua"
    before, cpu_before = checks.proxy_counts(server), cpu_seconds(server.process.pid)
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is the only child reaped meanwhile
    idle_before = idle_cpu_seconds()
    # Half-way through the run, count which worker holds which of wrk's connections.
    held: dict[int, int] = {}
    pids = list(cpu_before)
    census = threading.Timer(
        (duration_s or rig.duration_s) / 2, lambda: held.update(connections_by_pid(pids, server.port))
    )
    census.start()
    try:
        run = rig.wrk(server, script, SCALING_CONNECTIONS, duration_s, pin, pipeline)
    finally:
        census.cancel()
        census.join()
    idle = idle_cpu_seconds() - idle_before
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after, delta = cpu_seconds(server.process.pid), checks.difference(checks.proxy_counts(server), before)
    only_hits(server, delta)
    if sum(held.values()) != SCALING_CONNECTIONS:
        raise BenchError(
            f"{server.name}: the census found {sum(held.values())} of wrk's {SCALING_CONNECTIONS} connections: {held}"
        )
    # wrk counts responses; when it stops, up to `pipeline` requests per connection may
    # have been served whose responses it did not read.
    checks.require_served(f"{server.name} hits", delta["hit"], run.requests, SCALING_CONNECTIONS * pipeline)
    used = {pid: seconds - cpu_before.get(pid, 0.0) for pid, seconds in cpu_after.items()}
    workers = [seconds for pid, seconds in used.items() if pid != server.process.pid]  # below the supervisor
    total = sum(used.values())
    wrk_s = (wrk_after.ru_utime + wrk_after.ru_stime) - (wrk_before.ru_utime + wrk_before.ru_stime)
    return {
        "rps": run.rps,
        "cpu_us_per_request": total / run.requests * 1e6,
        "proxy_cores": total / run.duration_s,
        "wrk_cores": wrk_s / run.duration_s,
        "wrk_cpu_us_per_request": wrk_s / run.requests * 1e6,
        "idle_cores": idle / run.duration_s,  # the whole machine: is anything left to use?
        # With one worker the server process is the worker: share 1.
        "busiest_share": max(workers) / sum(workers) if workers and sum(workers) else 1.0,
        # wrk's connections held by the process holding the most, and by all together
        # (the census must find all 64, else it is void).
        "busiest_connections": max(held.values(), default=0),
        "connections": sum(held.values()),
    }


# --- streaming rows -----------------------------------------------------------------------

# Row e′: a 2-token answer, so the fake upstream's whole stream (5 events, 1 KB instead of
# 152 events, 37 KB) is written before the proxy relays its first event. With the long
# stream the fake is still writing, on the CPU it shares with the client, when the proxy
# relays the first event, and the client often gets that CPU only once the fake is done.
SHORT_STREAM_TOKENS = 2


def row_e(rig: Rig) -> Figures:
    return streaming.run(_ttfb(rig, rig.stream_requests, chat_body(MARKER, stream=True)))


def row_e_short(rig: Rig) -> Figures:
    """Row e, second variant (its own step, right after the first). Figures end in `_short`."""
    template = chat_body(MARKER, stream=True, max_tokens=SHORT_STREAM_TOKENS)
    figures = streaming.run(_ttfb(rig, rig.stream_requests, template))
    return {f"{name}_short": value for name, value in figures.items()}


async def _ttfb(rig: Rig, count: int, template: bytes) -> Figures:
    """Streamed misses, direct and through llmcache interleaved request by request."""
    nonce = secrets.token_hex(6)
    direct: list[float] = []
    proxied: list[float] = []
    for number in range(count):
        body = fill(template, f"{nonce}-{number}")
        # Alternate who goes first so neither side always follows the other's work.
        order = (
            (("direct", rig.fake), ("proxy", rig.proxy)) if number % 2 else (("proxy", rig.proxy), ("direct", rig.fake))
        )
        for side, server in order:
            result = await streaming.stream_once(server.port, body)
            _check_stream(server, result, "miss" if side == "proxy" else None)
            (proxied if side == "proxy" else direct).append(result.ttfb_ms)
    return {
        "direct_p50_ms": percentile(direct, 50),
        "direct_p99_ms": percentile(direct, 99),
        "proxy_p50_ms": percentile(proxied, 50),
        "proxy_p99_ms": percentile(proxied, 99),
        # Each proxied request against the direct one with the same number (sent just
        # before or after it): drift between the two p50s cancels out here.
        "paired_p50_ms": percentile([p - d for p, d in zip(proxied, direct)], 50),
    }


def row_f(rig: Rig) -> Figures:
    return streaming.run(_burst(rig))


async def _burst(rig: Rig) -> Figures:
    """`burst` identical streamed misses at once against an upstream that stalls first."""
    body = fill(chat_body(MARKER, stream=True), f"burst-{secrets.token_hex(6)}")
    headers = {"x-fake-delay-ms": str(rig.burst_delay_ms)}
    calls = await asyncio.to_thread(checks.upstream_calls, rig.fake)
    # Connect everyone first, so the requests leave back to back.
    prepared = await asyncio.gather(*(streaming.prepare(rig.proxy.port, body, headers) for _ in range(rig.burst)))
    results = await asyncio.gather(*(streaming.fire(p) for p in prepared))
    upstream = await asyncio.to_thread(checks.upstream_calls, rig.fake) - calls
    streams = set()
    for result in results:
        _check_stream(rig.proxy, result, "miss")
        streams.add(result.body)
    if len(streams) != 1:
        raise BenchError(f"coalesced clients received {len(streams)} different streams")
    firsts = [r.first_event_at for r in results]
    sent = min(r.sent_at for r in results)
    return {
        "upstream_calls": float(upstream),
        "spread_ms": (max(firsts) - min(firsts)) * 1000,
        "leader_ttfb_ms": (min(firsts) - sent) * 1000,
    }


def _check_stream(server: Server, result: streaming.StreamResult, cache_status: str | None) -> None:
    if result.status != 200:
        raise BenchError(f"{server.name}: streamed request got {result.status}: {result.body[:300]!r}")
    if cache_status is not None and result.headers.get("x-cache-status") != cache_status:
        raise BenchError(
            f"{server.name}: expected x-cache-status {cache_status}, got {result.headers.get('x-cache-status')}"
        )
    if not result.body.rstrip().endswith(b"data: [DONE]"):
        raise BenchError(f"{server.name}: stream did not end with [DONE]: {result.body[-200:]!r}")


def percentile(values: list[float], rank: float) -> float:
    """Nearest-rank percentile: an observed value, no interpolation."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]


Step = tuple[str, Callable[[Rig], Figures]]

# One round, in order. Each pair that forms a ratio runs back to back (a then b under
# load, a then b unloaded, c then d), so drift on a shared machine hits both sides alike.
STEPS: tuple[Step, ...] = (
    ("a", lambda rig: loaded(rig, bare(rig))),
    ("b", lambda rig: hits(rig, lambda: loaded(rig, rig.proxy))),
    ("l", lambda rig: peer(rig, lambda server: loaded(rig, server))),
    ("a", lambda rig: single(rig, bare(rig), "fixed.lua")[0]),
    ("b", lambda rig: hits(rig, lambda: single(rig, rig.proxy, "fixed.lua")[0])),
    ("l", lambda rig: peer(rig, lambda server: single(rig, server, "fixed.lua")[0])),
    ("g", redis_hits),
    ("c", direct),
    ("d", lambda rig: misses(rig, rig.proxy)),
    ("dd", lambda rig: misses(rig, rig.proxy_disk)),
    ("e", row_e),
    ("e", row_e_short),
    ("f", row_f),
    ("h", scaling),
    ("h", scaling_pipelined),
)
