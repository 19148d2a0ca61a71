"""llmcache benchmark: every figure side by side with its reference, in one run.

    python -m bench.run            # 3 rounds × 5 s, the published figures
    python -m bench.run --quick    # 1 round × 2 s smoke run
    python -m bench.run --only a,b # selected rows (a b c d dd e f)

The machine is small and shared, so absolute numbers drift; rows are alternated within
each round and the report leads with per-round ratios, which survive the drift.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import checks, report, rows, streaming
from bench.bodies import MARKER, chat_body, fill
from bench.procs import REPO, BenchError, Placement, Processes, Server, free_port
from bench.wrk import ensure_wrk

RESULTS = Path(__file__).resolve().parent / "results"
ALL_ROWS = ("a", "b", "c", "d", "dd", "e", "f")
WRK_ROWS = ("a", "b", "c", "d", "dd")


@dataclass(frozen=True)
class Options:
    rows: tuple[str, ...]
    rounds: int
    duration_s: float
    warmup_s: float
    stream_requests: int
    burst: int
    strict: bool


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 2 s runs, 50 streams: a smoke run")
    parser.add_argument("--only", default=",".join(ALL_ROWS), help="comma-separated rows: " + " ".join(ALL_ROWS))
    parser.add_argument("--rounds", type=int, help="rounds (default 3, quick 1)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 5, quick 2)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
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
        stream_requests=50 if args.quick else 200,
        burst=50,
        strict=args.strict,
    )


# --- servers ------------------------------------------------------------------------------

def proxy_config(path: Path, upstream: Server, disk_dir: Path | None) -> Path:
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


def start_proxy(procs: Processes, placement: Placement, name: str, config: Path) -> Server:
    port = free_port()
    argv = placement.pin(placement.server, [*llmcache_command(), "serve", "--config", str(config), "--port", str(port)])
    return procs.start(name, argv, port, "/health")


def start_rig(procs: Processes, placement: Placement, options: Options, work: Path) -> rows.Rig:
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
    hit_file = work / "hit-request.json"
    hit_file.write_bytes(fill(chat_body(MARKER), "cached"))
    template = work / "miss-template.json"
    template.write_bytes(chat_body(MARKER))
    hit_response = capture_hit(proxy, hit_file.read_bytes())
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
        placement, fake, proxy, proxy_disk, bare, hit_file, template, options.duration_s,
        options.stream_requests, options.burst, burst_delay_ms=200,
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
    targets = {"a": (rig.bare, "fixed.lua"), "b": (rig.proxy, "fixed.lua"), "c": (rig.fake, "unique.lua"),
               "d": (rig.proxy, "unique.lua"), "dd": (rig.proxy_disk, "unique.lua")}
    for row in (r for r in WRK_ROWS if r in options.rows):
        server, script = targets[row]
        assert server is not None
        rig.wrk(server, script, rows.LOAD_CONNECTIONS, options.warmup_s)
    if "e" in options.rows or "f" in options.rows:
        body = chat_body(MARKER, stream=True)
        for number in range(10):
            for server in (rig.fake, rig.proxy):
                streaming.run(streaming.stream_once(server.port, fill(body, f"warm-{time.time_ns()}-{number}")))


# --- the run ------------------------------------------------------------------------------

def measure(rig: rows.Rig, options: Options) -> report.Rounds:
    results: report.Rounds = {row: [] for row in options.rows}
    steps = [(row, step) for row, step in rows.STEPS if row in options.rows]
    for number in range(1, options.rounds + 1):
        current: dict[str, report.Figures] = {row: {} for row in options.rows}
        for row, step in steps:
            started = time.monotonic()
            figures = step(rig)
            current[row].update(figures)
            took = time.monotonic() - started
            print(f"round {number}/{options.rounds} {row}: {_short(figures)} ({took:.1f}s)", flush=True)
        for row in options.rows:
            results[row].append(current[row])
    return results


def _short(figures: report.Figures) -> str:
    return ", ".join(f"{k}={v:.0f}" if v >= 100 or float(v).is_integer() else f"{k}={v:.3f}" for k, v in figures.items())


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    ensure_wrk()
    placement = Placement.detect()
    placement.pin_self_to_load()
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        with Processes(logs) as procs:
            rig = start_rig(procs, placement, options, logs)
            warm_up(rig, options)
            results = measure(rig, options)
    except (BenchError, httpx.HTTPError, subprocess.TimeoutExpired, OSError) as error:
        print(f"benchmark failed: {type(error).__name__}: {error}\n(server logs in {logs})", file=sys.stderr)
        return 2
    markdown = report.render(results, placement, options.rounds, options.duration_s, options.stream_requests, options.burst)
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
