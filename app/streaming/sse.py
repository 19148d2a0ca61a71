"""Server-sent events with named events (`event:` + `data:`), as the Responses and
Anthropic Messages APIs send them."""

from __future__ import annotations

from typing import Any

import orjson


def named_events(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    """(event name, JSON payload) of every event in a whole stream; payloads that are not
    JSON objects are skipped."""
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    out: list[tuple[str | None, dict[str, Any]]] = []
    for block in raw.split(b"\n\n"):
        name: str | None = None
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode("utf-8", "replace")
            elif line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
        if not data:
            continue
        try:
            payload = orjson.loads(b"\n".join(data))
        except orjson.JSONDecodeError:
            continue
        if isinstance(payload, dict):
            out.append((name, payload))
    return out


def frame(payload: dict[str, Any]) -> bytes:
    """One event named after its payload's `type`."""
    return b"event: " + str(payload["type"]).encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
