"""What tracing costs a hit: this build with the otel SDK not installed, installed but
off, and on, side by side in one run (and, with --before, a checkout without tracing).

    .venv/bin/python -m bench.tracing                       # about a minute
    .venv/bin/python -m bench.tracing --before /path/to/checkout/before/tracing

Each side is a child process driving the ASGI app in-process (no network, no load
generator: wrk's throughput swings by tens of percent on this 2-core machine between
runs), in turn, round after round; the figure kept is the minimum CPU time over the
rounds (noise only ever adds time), and hits per CPU-second is its inverse. Two hits:

- fast path: a repeated request answered from the local tier (`Chain.peek`, app/memo.py);
- whole pipeline: the same entry asked for as a stream, which the fast path never takes
  (parse, key, `Chain.get` with its lookup span site, replay as SSE).

"not installed" hides the SDK and the exporter from the child (an import of them fails),
as on an install without the `otel` extra; "off" has them installed. Neither may import
the SDK: the child checks. "on" exports every span over OTLP/HTTP to a receiver in this
(the parent) process, so decoding them is not charged to the proxy; the BatchSpanProcessor
drops spans beyond its queue (2,048 by default) between exports, as it would in service.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# label → (how the child runs, extra environment)
SIDES: dict[str, tuple[str, dict[str, str]]] = {
    "not installed": ("not installed", {}),
    "off": ("off", {}),
    "on": ("on", {}),
    "on, 1% sampled": ("on", {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}),
}
BEFORE = "before (no tracing code)"
HIDDEN = ("opentelemetry.sdk", "opentelemetry.exporter")
ANSWER = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * 400}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


async def measure(hits: int, misses: int, traced: bool) -> dict[str, Any]:
    import httpx
    import orjson

    from app.config import Settings
    from app.server import create_app
    from bench.bodies import chat_body

    answer = orjson.dumps(ANSWER)

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "application/json"}, content=answer)

    values: dict[str, Any] = {
        "upstream": {"base_url": "http://up.invalid/v1"},
        "cache": {"tiers": [{"type": "local", "max_entries": 1_000_000}]},
    }
    if traced:  # only a key the checkout knows: a `before` checkout has no `tracing`
        values["tracing"] = {"enabled": True}
    app = create_app(Settings(**values), httpx.MockTransport(upstream))
    await app.startup()

    statuses: list[bytes] = []

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.append(dict(message["headers"]).get(b"x-cache-status", b""))

    async def call(body: bytes) -> None:
        headers = [
            (b"host", b"x"),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer sk-test"),
            (b"content-length", str(len(body)).encode()),
        ]
        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}
        scope["query_string"] = b""

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        await app(scope, receive, send)

    async def cpu_per_call(bodies: list[bytes], status: bytes) -> float:
        gc.collect()
        statuses.clear()
        started = time.process_time()
        for body in bodies:
            await call(body)
        spent = time.process_time() - started
        assert set(statuses) == {status}, set(statuses)
        return spent / len(bodies) * 1e6

    hit_body = chat_body("hit")
    streamed = orjson.dumps({**orjson.loads(hit_body), "stream": True})
    await call(hit_body)  # stored: every later call of either body is a hit
    fast = await cpu_per_call([hit_body] * hits, b"hit")
    whole = await cpu_per_call([streamed] * (hits // 4), b"hit")
    miss = await cpu_per_call([chat_body(f"miss {i}") for i in range(misses)], b"miss")
    assert app.runtime is not None
    await app.runtime.chain.drain()
    await app.shutdown()
    sdk = sorted(m for m, module in sys.modules.items() if m.startswith(HIDDEN) and module is not None)
    return {"fast_us": fast, "whole_us": whole, "miss_us": miss, "sdk_imported": bool(sdk)}


def child(side: str, hits: int, misses: int) -> None:
    if side == "not installed":
        for name in HIDDEN:
            sys.modules[name] = None  # type: ignore[assignment]  # an import of it now fails
    figures = asyncio.run(measure(hits, misses, side == "on"))
    print(json.dumps(figures))


def run_side(repo: Path, side: str, env: dict[str, str], hits: int, misses: int) -> dict[str, Any]:
    """This file as a child process in `repo` (that checkout's `app`), for one side."""
    env = {"PYTHONPATH": f"{repo}:{ROOT}", "PATH": "/usr/bin:/bin", **env}
    done = subprocess.run(
        [sys.executable, __file__, "--child", side, str(hits), str(misses)],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="a checkout without tracing, measured as a fourth side")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--hits", type=int, default=20_000)
    parser.add_argument("--misses", type=int, default=2_000)
    args = parser.parse_args()
    os.chdir(ROOT)
    from tests.otlp_collector import Collector

    sides = [(label, ROOT, *how) for label, how in SIDES.items()]
    if args.before:
        sides.insert(0, (BEFORE, Path(args.before).resolve(), "off", {}))
    best: dict[str, dict[str, Any]] = {}
    with Collector() as collector:
        for round_number in range(args.rounds):
            for side, repo, run, env in sides:
                env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
                figures = run_side(repo, run, env, args.hits, args.misses)
                kept = best.setdefault(side, figures)
                for name, value in figures.items():
                    kept[name] = min(kept[name], value) if name.endswith("_us") else kept[name] or value
            print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
        spans = len(collector.spans)
    command = f"python -m bench.tracing --rounds {args.rounds} --hits {args.hits} --misses {args.misses}"
    print(f"`{command}{' --before CHECKOUT' if args.before else ''}`: min over rounds, CPU time per call\n")
    print(
        "| side | fast-path hit (µs) | hits/s per CPU | whole-pipeline hit (µs) | hits/s per CPU | miss (µs) | SDK imported |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for side, *_ in sides:
        b = best[side]
        print(
            f"| {side} | {b['fast_us']:.2f} | {1e6 / b['fast_us']:,.0f} | {b['whole_us']:.2f} | "
            f"{1e6 / b['whole_us']:,.0f} | {b['miss_us']:.1f} | {'yes' if b['sdk_imported'] else 'no'} |"
        )
    base = best["not installed"]
    print()
    for side, *_ in sides:
        if side != "not installed":
            ratio = {name: best[side][name] / base[name] for name in ("fast_us", "whole_us", "miss_us")}
            print(
                f"- {side} / not installed, CPU per call: fast-path hit {ratio['fast_us']:.3f}×, "
                f"whole-pipeline hit {ratio['whole_us']:.3f}×, miss {ratio['miss_us']:.3f}×"
            )
    print(f"- spans the receiver got from the `on` sides over all rounds: {spans:,}")
    if any(best[side]["sdk_imported"] for side in ("not installed", "off")):
        raise SystemExit("tracing off imported the OpenTelemetry SDK")


if __name__ == "__main__":
    main()
