"""CPU time per cache hit and per miss, through the ASGI app in-process: no network, no
load generator, so two checkouts can be told apart on a noisy machine where wrk's
throughput swings by tens of percent between runs.

    .venv/bin/python -m bench.cpu_per_call --repo /path/to/old/checkout --repo .

Each checkout runs in its own process (its own `app` package), in turn, round after
round; the figure kept is the minimum over the rounds (noise only ever adds time). A hit
is the same ~1 KB chat request served from the local tier; a miss is a new request each
time, answered by an in-process upstream (httpx.MockTransport), so what differs between
checkouts is only llmcache's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ANSWER = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * 400}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


async def measure(hits: int, misses: int) -> dict[str, float]:
    import httpx
    import orjson

    from app.config import Settings
    from app.server import create_app
    from bench.bodies import chat_body

    answer = orjson.dumps(ANSWER)

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "application/json"}, content=answer)

    tiers = [{"type": "local", "max_entries": 1_000_000}]
    app = create_app(
        Settings(upstream={"base_url": "http://up.invalid/v1"}, cache={"tiers": tiers}), httpx.MockTransport(upstream)
    )
    await app.startup()
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def call(body: bytes) -> None:
        headers = [
            (b"host", b"x"),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer sk-test"),
            (b"content-length", str(len(body)).encode()),
        ]
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": headers,
            "query_string": b"",
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        await app(scope, receive, send)
        sent.clear()

    hit_body = chat_body("hit")
    fresh = [chat_body(f"miss {i}") for i in range(misses)]
    await call(hit_body)  # stored: every later call is a hit
    gc.collect()
    started = time.process_time()
    for _ in range(hits):
        await call(hit_body)
    hit = (time.process_time() - started) / hits
    started = time.process_time()
    for body in fresh:
        await call(body)
    assert app.runtime is not None
    await app.runtime.chain.drain()
    miss = (time.process_time() - started) / misses
    await app.shutdown()
    return {"hit_us": hit * 1e6, "miss_us": miss * 1e6}


def run_in(repo: Path, hits: int, misses: int) -> dict[str, float]:
    """This file run as a child process in `repo`: that checkout's `app` is measured."""
    python = repo / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(python if python.exists() else sys.executable), __file__, "--child", str(hits), str(misses)],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"},
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(asyncio.run(measure(int(sys.argv[2]), int(sys.argv[3])))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", action="append", default=[], help="a checkout (repeat to compare); default: .")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--hits", type=int, default=20_000)
    parser.add_argument("--misses", type=int, default=3_000)
    args = parser.parse_args()
    repos = [Path(r).resolve() for r in args.repo or ["."]]
    best: dict[Path, dict[str, float]] = {}
    for _ in range(args.rounds):
        for repo in repos:
            figures = run_in(repo, args.hits, args.misses)
            kept = best.setdefault(repo, figures)
            for name, value in figures.items():
                kept[name] = min(kept[name], value)
    print("| checkout | CPU per hit (µs) | CPU per miss (µs) |")
    print("| --- | --- | --- |")
    for repo in repos:
        print(f"| {repo} | {best[repo]['hit_us']:.2f} | {best[repo]['miss_us']:.2f} |")
    if len(repos) > 1:
        first = best[repos[0]]
        for repo in repos[1:]:
            ratio = {name: best[repo][name] / first[name] for name in first}
            print(f"\n{repo} / {repos[0]}: hit {ratio['hit_us']:.3f}×, miss {ratio['miss_us']:.3f}×")


if __name__ == "__main__":
    main()
