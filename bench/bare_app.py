"""The ceiling: a raw ASGI app that answers every request with one fixed body.

It does the least a cache hit must do — read the request body, send status, headers and
the stored bytes — on the same server stack as the proxy (uvicorn, uvloop, httptools,
no access log), so llmcache's hit throughput can be read as a fraction of it.

    python -m bench.bare_app --port 9000 [--body-file hit.json]
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Stands in when no captured hit body is given: a typical ~1 KB chat completion.
DEFAULT_BODY = orjson.dumps(
    {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Benchmark answer. " * 45, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 250, "completion_tokens": 180, "total_tokens": 430},
        "system_fingerprint": "fp_bench",
    }
)


class BareApp:
    """Answers every HTTP request with `body`; lifespan is accepted and ignored."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        # Built once: the proxy's hit path also sends precomputed header values.
        self.start: Message = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
        self.message: Message = {"type": "http.response.body", "body": body}

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        # A hit has to read the request to key it; so does the ceiling.
        message = await receive()
        while message.get("more_body", False):
            message = await receive()
        await send(self.start)
        await send(self.message)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="fixed-body ASGI app: the benchmark ceiling")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, help="bytes to answer with (default: a built-in ~1 KB completion)")
    args = parser.parse_args(argv)
    body = args.body_file.read_bytes() if args.body_file else DEFAULT_BODY
    uvicorn.run(
        BareApp(body),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
