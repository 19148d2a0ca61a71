"""The fast path on a real server: a remembered hit is the response the whole pipeline
sends for it, byte for byte but for `date` and `age`, written straight to the connection
(keep-alive, `connection: close` and pipelined requests alike), counted the same, and never
an entry the cache no longer holds."""

from __future__ import annotations

import socket

import httpx

from tests.conftest import ServedProxy, metric_value

CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"fast path"}]}'


def raw_request(body: bytes, *extra: bytes) -> bytes:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    head += b"authorization: Bearer sk-user\r\n" + b"".join(line + b"\r\n" for line in extra)
    return head + b"content-length: %d\r\n\r\n%s" % (len(body), body)


def read_response(sock: socket.socket, buffered: bytes = b"") -> tuple[list[tuple[bytes, bytes]], bytes, bytes]:
    """(header fields in order, body, bytes read past it)."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a head"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK", lines[0]
    fields = [tuple(line.split(b": ", 1)) for line in lines[1:]]
    length = int(dict(fields)[b"content-length"])  # type: ignore[arg-type]
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the body's end"
        rest += chunk
    return fields, rest[:length], rest[length:]  # type: ignore[return-value]


def without_clock(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name, b"" if name in (b"date", b"age") else value) for name, value in fields]


def port_of(proxy: ServedProxy) -> int:
    return int(proxy.root.rsplit(":", 1)[1])


def hits(proxy: ServedProxy, request: bytes, count: int) -> list[tuple[list[tuple[bytes, bytes]], bytes]]:
    with socket.create_connection(("127.0.0.1", port_of(proxy)), timeout=5) as sock:
        out = []
        for _ in range(count):
            sock.sendall(request)
            fields, body, extra = read_response(sock)
            assert not extra
            out.append((fields, body))
        return out


def test_a_remembered_hit_is_the_whole_pipelines_hit(serve) -> None:
    fast, slow = serve(), serve()
    assert fast.app.runtime is not None and slow.app.runtime is not None
    slow.app.runtime.pipeline.memo = None  # the whole pipeline on every request
    request = raw_request(CHAT, b"x-request-id: 1")
    answers = {name: hits(proxy, request, 4) for name, proxy in (("fast", fast), ("slow", slow))}
    for name, ((miss_fields, miss_body), *hit_answers) in answers.items():
        assert dict(miss_fields)[b"x-cache-status"] == b"miss", name
        for fields, body in hit_answers:
            assert dict(fields)[b"x-cache-status"] == b"hit", name
            assert body == miss_body, name
    fast_hit, slow_hit = answers["fast"][-1], answers["slow"][-1]
    assert without_clock(fast_hit[0]) == without_clock(slow_hit[0])
    assert fast.app.runtime.pipeline.memo is not None and len(fast.app.runtime.pipeline.memo) == 1
    # Counted alike: requests, durations, tokens and money saved, tier reads.
    with fast.admin() as a, slow.admin() as b:
        fast_metrics, slow_metrics = a.get("/metrics").text, b.get("/metrics").text
    for sample, labels in (
        ("llmcache_requests_total", {"cache_status": "hit"}),
        ("llmcache_request_duration_seconds_count", {"cache_status": "hit"}),
        ("llmcache_tokens_saved_total", {}),
        ("llmcache_cost_saved_usd_total", {}),
        ("llmcache_tier_operations_total", {"tier": "local", "op": "get", "result": "hit"}),
        ("llmcache_tier_operations_total", {"tier": "local", "op": "get", "result": "miss"}),
    ):
        expected = metric_value(slow_metrics, sample, **labels)
        assert metric_value(fast_metrics, sample, **labels) == expected, sample
        assert sample == "llmcache_tier_operations_total" or expected > 0, sample


def test_connection_close_and_pipelined_requests(serve) -> None:
    proxy = serve()
    hits(proxy, raw_request(CHAT), 2)  # stored, and the plan remembered
    with socket.create_connection(("127.0.0.1", port_of(proxy)), timeout=5) as sock:
        sock.sendall(raw_request(CHAT) * 3)  # three requests in one write
        extra = b""
        for _ in range(3):
            fields, _, extra = read_response(sock, extra)
            assert dict(fields)[b"x-cache-status"] == b"hit"
    with socket.create_connection(("127.0.0.1", port_of(proxy)), timeout=5) as sock:
        sock.sendall(raw_request(CHAT, b"connection: close"))
        fields, _, _ = read_response(sock)
        assert fields[-1] == (b"connection", b"close")
        assert dict(fields)[b"x-cache-status"] == b"hit"
        assert sock.recv(65536) == b""  # and the server closed it


def test_a_deleted_or_too_old_entry_is_not_served(serve, fake) -> None:
    proxy = serve()
    (_, _), (fields, _) = hits(proxy, raw_request(CHAT), 2)
    key = dict(fields)[b"x-cache-key"].decode()
    with proxy.admin() as admin:
        assert admin.delete(f"/cache/keys/{key}").json() == {"deleted": 1}
    (fields, _), (again, _) = hits(proxy, raw_request(CHAT), 2)
    assert dict(fields)[b"x-cache-status"] == b"miss"
    assert dict(again)[b"x-cache-status"] == b"hit"
    # s-maxage is checked on every hit: an entry older than the request allows is a miss.
    old_enough = raw_request(CHAT, b"x-cache-s-maxage: 0")
    statuses = [dict(fields)[b"x-cache-status"] for fields, _ in hits(proxy, old_enough, 2)]
    assert statuses == [b"miss", b"miss"]
    assert fake.chat_calls() == 4
    response = httpx.post(
        proxy.base_url + "/chat/completions", content=CHAT, headers={"authorization": "Bearer sk-user"}
    )
    assert response.headers["x-cache-status"] == "hit"
