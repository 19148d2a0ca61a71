"""llmcache benchmark: every figure side by side with its reference, in one run.

    python -m bench.run            # 3 rounds × 5 s, the published figures
    python -m bench.run --quick    # 1 round × 2 s smoke run
    python -m bench.run --only a,b # selected rows (a b c d dd e f g h)

The machine is small and shared, so absolute numbers drift; rows are alternated within
each round and the report leads with per-round ratios, which survive the drift.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from bench import checks, litellm, redisbench, report, rows, streaming
from bench.bodies import MARKER, chat_body, fill
from bench.procs import REPO, BenchError, OtherLoad, Placement, Processes, Server, free_port
from bench.wrk import ensure_wrk

RESULTS = Path(__file__).resolve().parent / "results"
ALL_ROWS = ("a", "b", "l", "c", "d", "dd", "e", "f", "g", "h")
WRK_ROWS = ("a", "b", "l", "c", "d", "dd", "g")
WORKER_COUNTS = (1, 2)  # row h
WORKER_WARMUP_DEADLINE_S = 30.0
QUIET_PROBE_S = 0.5
QUIET_WAIT_S = 60.0


@dataclass(frozen=True)
class Options:
    rows: tuple[str, ...]
    rounds: int
    duration_s: float
    warmup_s: float
    stream_requests: int
    burst: int
    strict: bool
    redo_disturbed: int


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 2 s runs, 50 streams: a smoke run")
    parser.add_argument("--only", default=",".join(ALL_ROWS), help="comma-separated rows: " + " ".join(ALL_ROWS))
    parser.add_argument("--rounds", type=int, help="rounds (default 3, quick 1)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 5, quick 2)")
    parser.add_argument(
        "--stream-requests", type=int, help="rows e and e′: streamed misses per side per round (default 400, quick 50)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--redo-disturbed",
        type=int,
        help=f"run a round again when other load above {report.OTHER_LOAD_NOTICE_CPUS} CPUs competed with one of its "
        "steps, at most this many times (default 3, quick 0)",
    )
    args = parser.parse_args(argv)
    selected = tuple(row.strip() for row in args.only.split(",") if row.strip())
    unknown = sorted(set(selected) - set(ALL_ROWS))
    if unknown or not selected:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ALL_ROWS)}")
    return Options(
        rows=tuple(row for row in ALL_ROWS if row in selected),  # canonical order: a before b, c before d
        rounds=max(1, args.rounds or (1 if args.quick else 3)),
        duration_s=args.duration or (2.0 if args.quick else 5.0),
        warmup_s=1.0,
        stream_requests=max(1, args.stream_requests or (50 if args.quick else 400)),
        burst=50,
        strict=args.strict,
        redo_disturbed=max(0, args.redo_disturbed if args.redo_disturbed is not None else (0 if args.quick else 3)),
    )


# --- servers ------------------------------------------------------------------------------


def proxy_config(path: Path, upstream: Server, disk_dir: Path | None, tiers: str | None = None) -> Path:
    if tiers is None:
        tiers = "[{type: local}]" if disk_dir is None else f"[{{type: local}}, {{type: disk, path: '{disk_dir}'}}]"
    path.write_text(
        "server: {host: 127.0.0.1}\n"
        f"upstream: {{base_url: '{upstream.url}/v1'}}\n"
        f"cache: {{tiers: {tiers}}}\n"
        f"admin: {{token: {checks.ADMIN_TOKEN}}}\n"
    )
    return path


def llmcache_command() -> list[str]:
    script = Path(sys.executable).parent / "llmcache"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def start_proxy(procs: Processes, placement: Placement, name: str, config: Path, workers: int | None = None) -> Server:
    port = free_port()
    argv = [*llmcache_command(), "serve", "--config", str(config), "--port", str(port)]
    if workers is None:
        argv = placement.pin(placement.server, argv)
    else:
        # Row h: N workers need N CPUs, so the server may use both (wrk too, see rows.py).
        argv = placement.pin_both([*argv, "--workers", str(workers)])
    return procs.start(name, argv, port, "/health")


def start_rig(
    procs: Processes, stack: contextlib.ExitStack, placement: Placement, options: Options, work: Path
) -> rows.Rig:
    port = free_port()
    fake_argv = placement.pin(
        placement.load, [sys.executable, "-m", "tests.fake_upstream", "--host", "127.0.0.1", "--port", str(port)]
    )
    fake = procs.start("fake-upstream", fake_argv, port, "/_stats")
    proxy = start_proxy(procs, placement, "llmcache-local", proxy_config(work / "local.yaml", fake, None))
    proxy_disk = None
    if "dd" in options.rows:
        disk = work / "disk-tier"
        shutil.rmtree(disk, ignore_errors=True)
        proxy_disk = start_proxy(procs, placement, "llmcache-disk", proxy_config(work / "disk.yaml", fake, disk))
    redis_server, proxy_redis = None, None
    if "g" in options.rows:
        # Redis sits with the load (wrk) on the second CPU, the proxy on the first as usual.
        redis_server = stack.enter_context(redisbench.redis_server(placement.load))
        tiers = f"[{{type: redis, url: '{redis_server.url}'}}]"  # no local tier: every hit reads Redis
        proxy_redis = start_proxy(
            procs, placement, "llmcache-redis", proxy_config(work / "redis.yaml", fake, None, tiers)
        )
    workers: dict[int, Server] = {}
    if "h" in options.rows:
        for count in WORKER_COUNTS:
            config = proxy_config(work / f"workers-{count}.yaml", fake, None)
            workers[count] = start_proxy(procs, placement, f"llmcache-workers-{count}", config, count)
    hit_file = work / "hit-request.json"
    hit_file.write_bytes(fill(chat_body(MARKER), "cached"))
    template = work / "miss-template.json"
    template.write_bytes(chat_body(MARKER))
    hit_response = capture_hit(proxy, hit_file.read_bytes())
    if proxy_redis is not None:
        capture_hit(proxy_redis, hit_file.read_bytes())
        found = checks.tier_types(proxy_redis)
        if found != ["redis"]:  # no tier may answer before Redis
            raise BenchError(f"{proxy_redis.name} has tiers {found}, expected only redis")
    for count, server in workers.items():
        warm_workers(server, count, hit_file.read_bytes())
    peer = None
    if "l" in options.rows:
        peer = litellm.start(procs, placement, fake, work)
        calls = checks.upstream_calls(fake)
        for _ in range(3):  # the first stores, the rest must be served from its cache
            checks.expect(peer, hit_file.read_bytes(), None)
        if checks.upstream_calls(fake) - calls != 1:
            raise BenchError("the LiteLLM proxy did not answer the repeated request from its cache")
    bare = None
    if "a" in options.rows:
        response_file = work / "hit-response.json"
        response_file.write_bytes(hit_response)
        port = free_port()
        argv = placement.pin(
            placement.server,
            [sys.executable, "-m", "bench.bare_app", "--port", str(port), "--body-file", str(response_file)],
        )
        bare = procs.start("bare-app", argv, port, "/")
        if checks.expect(bare, hit_file.read_bytes(), None) != hit_response:
            raise BenchError("the bare app does not answer with the captured hit body")
    return rows.Rig(
        placement,
        fake,
        proxy,
        proxy_disk,
        bare,
        hit_file,
        template,
        options.duration_s,
        options.stream_requests,
        options.burst,
        burst_delay_ms=200,
        proxy_redis=proxy_redis,
        redis=redis_server,
        workers=workers,
        litellm=peer,
    )


# --- verification and warmup --------------------------------------------------------------


def capture_hit(proxy: Server, body: bytes) -> bytes:
    """Store the hit row's entry and return the exact bytes a hit serves."""
    checks.expect(proxy, body, "miss")
    served = checks.expect(proxy, body, "hit")
    for _ in range(5):
        if checks.expect(proxy, body, "hit") != served:
            raise BenchError("two hits for the same request returned different bytes")
    return served


def warm_workers(server: Server, count: int, body: bytes) -> None:
    """Store the hit entry in every worker's own local tier.

    Each request opens a fresh connection (a new source port), and the kernel picks a
    worker's listening socket (SO_REUSEPORT) by a hash of the connection's addresses. A
    worker misses exactly once (it stores the entry before answering), so `count` misses
    mean every worker holds the entry; a worker still starting up has not bound its
    socket yet and gets no connections until it has.
    """
    deadline = time.monotonic() + WORKER_WARMUP_DEADLINE_S
    while checks.proxy_counts(server)["miss"] < count:
        if time.monotonic() > deadline:
            raise BenchError(f"{server.name}: not every worker served a request within {WORKER_WARMUP_DEADLINE_S}s")
        checks.expect(server, body, None)
    counts = checks.proxy_counts(server)
    if counts["miss"] != count:
        raise BenchError(f"{server.name}: {counts['miss']} misses while warming {count} worker(s)")
    for _ in range(5 * count):  # every answer from here on must be a hit
        checks.expect(server, body, "hit")


def verify_misses(rig: rows.Rig, proxy: Server) -> None:
    template = rig.miss_template_file.read_bytes()
    for number in range(3):
        checks.expect(proxy, fill(template, f"verify-{proxy.name}-{time.time_ns()}-{number}"), "miss")
    again = fill(template, f"verify-repeat-{time.time_ns()}")
    checks.expect(proxy, again, "miss")
    checks.expect(proxy, again, "hit")  # the proxy caches, so the miss row measures real misses


def warm_up(rig: rows.Rig, options: Options) -> None:
    """Exercise every code path once before anything is recorded."""
    checks.expect(rig.fake, fill(rig.miss_template_file.read_bytes(), f"verify-direct-{time.time_ns()}"), None)
    for proxy in (p for p in (rig.proxy, rig.proxy_disk) if p is not None):
        verify_misses(rig, proxy)
    targets = {
        "a": (rig.bare, "fixed.lua"),
        "b": (rig.proxy, "fixed.lua"),
        "l": (rig.litellm, "fixed.lua"),
        "c": (rig.fake, "unique.lua"),
        "d": (rig.proxy, "unique.lua"),
        "dd": (rig.proxy_disk, "unique.lua"),
        "g": (rig.proxy_redis, "fixed.lua"),
    }
    for row in (r for r in WRK_ROWS if r in options.rows):
        server, script = targets[row]
        assert server is not None
        rig.wrk(server, script, rows.LOAD_CONNECTIONS, options.warmup_s)
    if "g" in options.rows and "b" not in options.rows:
        rig.wrk(rig.proxy, "fixed.lua", rows.LOAD_CONNECTIONS, options.warmup_s)  # g's local-tier side
    for server in rig.workers.values():
        rows.workers_run(rig, server, options.warmup_s)  # also checks that only hits are served
        rows.workers_run(rig, server, options.warmup_s, rows.PIPELINE_DEPTH)
    if "e" in options.rows or "f" in options.rows:
        body = chat_body(MARKER, stream=True)
        for number in range(10):
            for server in (rig.fake, rig.proxy):
                streaming.run(streaming.stream_once(server.port, fill(body, f"warm-{time.time_ns()}-{number}")))


# --- the run ------------------------------------------------------------------------------


def measure(rig: rows.Rig, options: Options) -> tuple[report.Rounds, report.OtherLoads, int]:
    """Every kept round's figures, the other load during each of their steps, and how
    many rounds were run again because other load competed with them."""
    results: report.Rounds = {row: [] for row in options.rows}
    others: report.OtherLoads = []
    redone = 0
    number = 1
    while number <= options.rounds:
        current, loads = run_round(rig, options, number)
        disturbed = [(row, cpus) for _, row, cpus in loads if cpus > report.OTHER_LOAD_NOTICE_CPUS]
        if disturbed and redone < options.redo_disturbed:
            redone += 1
            worst = max(disturbed, key=lambda item: item[1])
            print(
                f"round {number} discarded: other load up to {worst[1]:.2f} CPUs (row {worst[0]}); "
                f"running it again ({redone}/{options.redo_disturbed})",
                flush=True,
            )
            continue
        for row in options.rows:
            results[row].append(current[row])
        others += loads
        number += 1
    return results, others, redone


def run_round(rig: rows.Rig, options: Options, number: int) -> tuple[dict[str, report.Figures], report.OtherLoads]:
    current: dict[str, report.Figures] = {row: {} for row in options.rows}
    loads: report.OtherLoads = []
    probe = OtherLoad()
    for row, step in ((row, step) for row, step in rows.STEPS if row in options.rows):
        if options.redo_disturbed:
            wait_quiet(probe)
        started = time.monotonic()
        probe.start()
        figures = step(rig)
        other = probe.stop()
        current[row].update(figures)
        loads.append((number, row, other))
        took = time.monotonic() - started
        print(
            f"round {number}/{options.rounds} {row}: {_short(figures)} ({took:.1f}s, other load {other:.2f} CPUs)",
            flush=True,
        )
    return current, loads


def wait_quiet(probe: OtherLoad) -> None:
    """Start a step only once the machine is quiet, or after QUIET_WAIT_S anyway."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while time.monotonic() < deadline:
        probe.start()
        time.sleep(QUIET_PROBE_S)  # a measurement window, not a wait for readiness
        if probe.stop() <= report.OTHER_LOAD_NOTICE_CPUS:
            return


def _short(figures: report.Figures) -> str:
    return ", ".join(
        f"{k}={v:.0f}" if v >= 100 or float(v).is_integer() else f"{k}={v:.3f}" for k, v in figures.items()
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    ensure_wrk()
    placement = Placement.detect()
    placement.pin_self_to_load()
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        # Exits in reverse: the proxies stop before Redis does.
        with contextlib.ExitStack() as stack, Processes(logs) as procs:
            rig = start_rig(procs, stack, placement, options, logs)
            warm_up(rig, options)
            results, others, redone = measure(rig, options)
    except (BenchError, httpx.HTTPError, redis.RedisError, subprocess.TimeoutExpired, OSError) as error:
        print(f"benchmark failed: {type(error).__name__}: {error}\n(server logs in {logs})", file=sys.stderr)
        return 2
    markdown = report.render(
        results, placement, options.rounds, options.duration_s, options.stream_requests, options.burst, others, redone
    )
    (RESULTS / "latest.md").write_text(markdown)
    print()
    print(markdown)
    print(f"(written to {(RESULTS / 'latest.md').relative_to(REPO)})")
    missed = report.missed_targets(results)
    if missed:
        print("targets missed: " + "; ".join(missed))
    return 1 if missed and options.strict else 0


if __name__ == "__main__":
    sys.exit(main())
