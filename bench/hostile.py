"""Hostile clients and broken peers against a real `llmcache serve`: robustness figures.

    .venv/bin/python -m bench.hostile [--repo DIR] [--out FILE] [--only 1,5,9]
    .venv/bin/python -m bench.hostile --compare BEFORE.json AFTER.json   # side-by-side table

Starts the fake upstream (`python -m tests.fake_upstream`, from this repository) and, per
attack, a fresh `llmcache serve --config <tmp yaml> --port <free port>` run from `--repo`
(default: this repository). `--repo` runs the same attacks against another checkout, e.g.
the code before a fix: its `.venv/bin/python -m app.cli` if it has one, else this venv's
python with cwd and PYTHONPATH set to it. A config key that checkout does not know (the
`server.body_timeout_s` of the fixed code) is left out for it, and the row says so.

For every attack the report gives the requests sent, the requests failed (connection
errors, 5xx from the proxy itself where the attack expects none, no answer before a
deadline), the entries lost where writes are expected, and the latency of `GET /health`
while the attack runs: a separate prober process polls it every 50 ms, each time on a new
connection, with a 2 s timeout (a process, not a thread of this one, so that the attack's
own client threads cannot delay the probe on this interpreter's lock). Every loop is
bounded in count and time; everything listens on 127.0.0.1 only; every server is its own
process group and is stopped on exit, also after an error or SIGTERM.

The Markdown report goes to stdout and to `--out`; the figures also go to `--out` with the
suffix `.json`, which `--compare` reads.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench import procs
from bench.bodies import chat_body

HOST = procs.HOST
REPO = procs.REPO
PYTHON = sys.executable
ADMIN = "hostile-admin-token"
CHAT = "/v1/chat/completions"
TRANSCRIPTIONS = "/v1/audio/transcriptions"
BAD_MODES = ("truncated", "error", "html", "shape", "sse-error")
PROBE_INTERVAL_S = 0.05
PROBE_TIMEOUT_S = 2.0
REQUEST_TIMEOUT_S = 10.0
AUDIO = b"RIFF" + bytes(range(256)) * 8
NEW_SERVER_KEYS = ("body_timeout_s", "max_header_bytes", "max_headers", "max_form_parts")


class Hung(Exception):
    """No complete answer before the deadline."""


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    num: int
    attack: str
    sent: int = 0
    failed: int = 0
    lost: int | None = None  # None: not applicable
    health: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""
    deviations: list[str] = field(default_factory=list)  # behaviour unlike the trust spec
    failures: list[str] = field(default_factory=list)  # the first few failed requests, described
    seconds: float = 0.0

    def fail(self, what: str, count: int = 1) -> None:
        self.failed += count
        if len(self.failures) < 8:
            self.failures.append(what)

    def deviate(self, what: str) -> None:
        if len(self.deviations) < 12:
            self.deviations.append(what)


def health_cell(health: dict[str, Any]) -> str:
    if not health:
        return "—"
    if not health.get("polls"):
        return "no polls"
    p50 = "—" if health["p50_ms"] is None else f"{health['p50_ms']:.1f}"
    top = "—" if health["max_ms"] is None else f"{health['max_ms']:.0f}"
    text = f"{p50} / {top} ms"
    extra = []
    if health["timeouts"]:
        extra.append(f"{health['timeouts']} timed out")
    if health["errors"]:
        extra.append(f"{health['errors']} errors")
    extra.append(f"{health['polls']} polls")
    return f"{text} ({', '.join(extra)})"


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    lines = [
        f"# llmcache hostile-client run — {meta['label']}",
        "",
        f"- code under test: `{meta['repo']}` at `{meta['commit']}`{meta['dirty']}",
        f"- date: {meta['date']}; machine: {meta['cpus']} CPUs; run took {meta['seconds']:.0f} s",
        f"- fake upstream `x-fake-bad` modes: {meta['bad_modes']}",
        f"- new server keys ({', '.join(NEW_SERVER_KEYS)}) accepted by this code: {meta['new_keys']}",
        "",
        "| # | attack | sent | failed | entries lost | /health p50 / max | outcome |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lost = "—" if row.lost is None else str(row.lost)
        lines.append(
            f"| {row.num} | {row.attack} | {row.sent} | {row.failed} | {lost} | {health_cell(row.health)} | {row.outcome} |"
        )
    if meta.get("disk_rate"):
        lines += ["", f"Disk tier write rate (in-process, `DiskTier`): {meta['disk_rate']}"]
    failures = [(row, f) for row in rows for f in row.failures]
    if failures:
        lines += ["", "## Failed requests (first few per attack)", ""]
        lines += [f"- {row.num}. {f}" for row, f in failures]
    deviations = [(row, d) for row in rows for d in row.deviations]
    lines += ["", "## Unlike the trust spec", ""]
    lines += [f"- {row.num}. {d}" for row, d in deviations] or ["- nothing"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- processes


class Fleet:
    """Every process this run starts, each in its own session; all stopped on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[subprocess.Popen[bytes]] = []
        self._previous: Any = None

    def __enter__(self) -> Fleet:
        self._previous = signal.signal(signal.SIGTERM, _raise_exit)
        return self

    def __exit__(self, *exc: Any) -> None:
        while self.children:
            self.stop(self.children[-1])
        signal.signal(signal.SIGTERM, self._previous)

    def spawn(
        self, name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "wb")
        try:
            child = subprocess.Popen(
                argv,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        finally:
            log.close()
        self.children.append(child)
        return child

    def serve(
        self, name: str, argv: list[str], cwd: Path, port: int, env: dict[str, str] | None = None
    ) -> procs.Server:
        child = self.spawn(name, argv, cwd, env)
        server = procs.Server(name, port, child, self.log_dir / f"{name}.log")
        procs.wait_ready(server, "/health", 30)
        return server

    def stop(self, child: subprocess.Popen[bytes]) -> None:
        procs._stop_group(child)
        if child in self.children:
            self.children.remove(child)


def _raise_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


class Target:
    """The checkout under test: how to run its `llmcache` command."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        own = repo / ".venv" / "bin" / "python"
        if own.exists():
            self.python, self.env = str(own), {}
        else:
            self.python, self.env = PYTHON, {"PYTHONPATH": str(repo)}

    def cli(self, *args: str) -> list[str]:
        return [self.python, "-m", "app.cli", *args]

    def commit(self) -> tuple[str, str]:
        head = subprocess.run(
            ["git", "-C", str(self.repo), "log", "-1", "--format=%h %s"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(self.repo), "status", "--porcelain", "--", "app"], capture_output=True, text=True
        ).stdout.strip()
        return head or "?", " (app/ has uncommitted changes)" if dirty else ""


class Context:
    def __init__(self, target: Target, fleet: Fleet, work: Path, upstream_port: int, bad_modes: bool) -> None:
        self.target = target
        self.fleet = fleet
        self.work = work
        self.upstream_port = upstream_port
        self.bad_modes = bad_modes
        self.new_keys = False
        self.serial = 0

    def config(self, tiers: list[dict[str, Any]], **server: Any) -> dict[str, Any]:
        if not self.new_keys:
            server = {k: v for k, v in server.items() if k not in NEW_SERVER_KEYS}
        return {
            "server": {"host": HOST, **server},
            "upstream": {"base_url": f"http://{HOST}:{self.upstream_port}/v1", "timeout_s": 30},
            "cache": {"tiers": tiers},
            "admin": {"token": ADMIN},
            "metrics": {"enabled": True},
        }

    def write_config(self, config: dict[str, Any]) -> Path:
        self.serial += 1
        path = self.work / f"config-{self.serial}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def disk(self) -> dict[str, Any]:
        self.serial += 1
        return {"type": "disk", "path": str(self.work / f"disk-{self.serial}")}

    @contextlib.contextmanager
    def proxy(self, name: str, config: dict[str, Any]) -> Any:
        path = self.write_config(config)
        port = procs.free_port()
        server = self.fleet.serve(
            name,
            self.target.cli("serve", "--config", str(path), "--port", str(port)),
            self.target.repo,
            port,
            self.target.env,
        )
        try:
            yield server
        finally:
            self.fleet.stop(server.process)


# --------------------------------------------------------------------------- /health prober


def probe_main(port: int) -> None:
    """The prober process: poll /health until stdin closes (or 600 s), print the figures."""
    stop = threading.Event()
    latencies: list[float] = []
    counts = {"timeouts": 0, "errors": 0}

    def poll() -> None:
        begin = time.monotonic()
        tick = 0
        while not stop.is_set() and time.monotonic() - begin < 600:
            started = time.monotonic()
            try:
                raw_request(port, "GET", "/health", {}, b"", PROBE_TIMEOUT_S)
                latencies.append(time.monotonic() - started)
            except (TimeoutError, Hung):
                counts["timeouts"] += 1
            except OSError:
                counts["errors"] += 1
            if tick == 0:
                print("ready", flush=True)
            tick += 1
            wait = begin + tick * PROBE_INTERVAL_S - time.monotonic()
            if wait < 0:  # a slow poll: the next one starts now, not a burst to catch up
                tick = int((time.monotonic() - begin) / PROBE_INTERVAL_S) + 1
                wait = begin + tick * PROBE_INTERVAL_S - time.monotonic()
            stop.wait(max(0.0, wait))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    sys.stdin.read()  # until the runner closes our stdin
    stop.set()
    thread.join(PROBE_TIMEOUT_S + 1)
    print(json.dumps({"latencies": latencies, **counts}))


class Prober:
    def __init__(self, port: int) -> None:
        self.child = subprocess.Popen(
            [PYTHON, "-m", "bench.hostile", "--probe-port", str(port)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.child.stdout is not None
        self.child.stdout.readline()  # "ready": its first poll is done (bounded by the 2 s timeout)

    def stop(self) -> dict[str, Any]:
        try:
            out, _ = self.child.communicate(b"", timeout=PROBE_TIMEOUT_S + 5)
            found = json.loads(out.decode().strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            self.child.kill()
            self.child.wait()
            return {"polls": 0, "p50_ms": None, "max_ms": None, "timeouts": 0, "errors": 0}
        latencies = [x * 1000 for x in found["latencies"]]
        return {
            "polls": len(latencies) + found["timeouts"] + found["errors"],
            "p50_ms": statistics.median(latencies) if latencies else None,
            "max_ms": max(latencies) if latencies else None,
            "timeouts": found["timeouts"],
            "errors": found["errors"],
        }


@contextlib.contextmanager
def probing(row: Row, port: int) -> Any:
    prober = Prober(port)
    time.sleep(0.2)  # a few polls of the idle proxy too
    started = time.monotonic()
    try:
        yield
    finally:
        row.seconds = time.monotonic() - started
        row.health = prober.stop()


# --------------------------------------------------------------------------- HTTP clients


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        status = 0  # not an HTTP status line: counted as an unexpected answer
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def dechunk(body: bytes) -> bytes:
    out = bytearray()
    rest = body
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    return bytes(out)


def raw_request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | list[tuple[str, str]],
    body: bytes,
    deadline_s: float = REQUEST_TIMEOUT_S,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection (`Connection: close`), read to EOF: works for a
    response cut short too. Raises Hung past the deadline, OSError on connection errors."""
    end = time.monotonic() + deadline_s
    head = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers.items() if isinstance(headers, dict) else headers)]
    if body or method == "POST":
        head.append(f"Content-Length: {len(body)}")
    with socket.create_connection((HOST, port), timeout=deadline_s) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        chunks = []
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise Hung(f"{method} {path}: no complete answer within {deadline_s}s")
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise Hung(f"{method} {path}: no complete answer within {deadline_s}s") from None
            except ConnectionResetError:
                if chunks:
                    break
                raise
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    if not raw:
        raise ConnectionError(f"{method} {path}: connection closed without an answer")
    status, got, rest = split_response(raw)
    if got.get("transfer-encoding", "").lower() == "chunked":
        rest = dechunk(rest)
    return status, got, rest


class Client:
    """A keep-alive client (one connection, reopened after an error)."""

    def __init__(self, port: int, timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            response = self.conn.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def chat(marker: str, **extra: Any) -> bytes:
    body = json.loads(chat_body(marker))
    body.update(extra)
    return json.dumps(body).encode()


JSON_HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-hostile"}


def describe_failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def error_code(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    error = document.get("error") if isinstance(document, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    return [
        (s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text) for s in family.samples
    ]


def fetch_metrics(port: int) -> str:
    status, _, body = raw_request(port, "GET", "/metrics", {}, b"", 30)
    return body.decode() if status == 200 else ""


def tier_entries(port: int) -> int | None:
    try:
        status, _, body = raw_request(port, "GET", "/cache/stats", {"authorization": f"Bearer {ADMIN}"}, b"", 5)
    except (OSError, Hung):
        return None
    if status != 200:
        return None
    tiers = json.loads(body).get("tiers") or []
    counts = [t.get("entries") for t in tiers]
    return sum(c for c in counts if isinstance(c, int)) if counts else None


def upstream_chat_calls(port: int) -> int:
    _, _, body = raw_request(port, "GET", "/_stats", {}, b"", 10)
    return int(json.loads(body)["calls"]["chat_completions"])


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def fmt_s(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f} s"


# --------------------------------------------------------------------------- attacks


def attack_slow_bodies(ctx: Context) -> Row:
    """300 connections that declare more body than they send (three ways of sending the head)."""
    row = Row(1, "300 bodies shorter than their Content-Length (`body_timeout_s: 2`)")
    timeout_s = 2
    config = ctx.config([{"type": "local"}], body_timeout_s=timeout_s)
    partial = b'{"model": "gpt-4o-mini", "messages": ['
    head = (
        f"POST {CHAT} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer sk-hostile\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    variants = ("head+partial body in one write", "head only", "head, then partial body in a second write")
    with ctx.proxy("p1-slow-bodies", config) as server:
        pid = server.process.pid
        time.sleep(0.3)
        fds_before = fd_count(pid)
        socks: dict[socket.socket, dict[str, Any]] = {}
        with probing(row, server.port):
            for i in range(300):
                variant = i % 3
                row.sent += 1
                try:
                    sock = socket.create_connection((HOST, server.port), timeout=5)
                    sock.sendall(head + partial if variant == 0 else head)
                except OSError as exc:
                    row.fail(f"connect/send #{i}: {describe_failure(exc)}")
                    continue
                socks[sock] = {"variant": variant, "buf": b""}
            time.sleep(0.2)
            for sock, state in socks.items():
                if state["variant"] == 2:
                    with contextlib.suppress(OSError):
                        sock.sendall(partial)
            opened = time.monotonic()
            time.sleep(0.3)
            fds_during = fd_count(pid)
            answers: dict[int, int] = {}
            by_variant: dict[int, int] = {0: 0, 1: 0, 2: 0}
            shape_bad: list[str] = []
            first = last = None
            closed_silent = 0
            pending = dict(socks)
            for sock in pending:
                sock.setblocking(False)
            deadline = opened + timeout_s + 10
            while pending and time.monotonic() < deadline:
                ready, _, _ = select.select(list(pending), [], [], 0.1)
                for sock in ready:
                    state = pending[sock]
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if data:
                        state["buf"] += data
                        if b"\r\n\r\n" not in state["buf"]:
                            continue
                        status, headers, body = split_response(state["buf"])
                        # Read the rest of a small error body if it is still coming.
                        length = int(headers.get("content-length", "0") or 0)
                        if len(body) < length:
                            continue
                        now = time.monotonic() - opened
                        first = now if first is None else first
                        last = now
                        answers[status] = answers.get(status, 0) + 1
                        if status == 408:
                            by_variant[state["variant"]] += 1
                            if (
                                error_code(body) != "request_timeout"
                                or headers.get("connection", "").lower() != "close"
                                or not headers.get("content-type", "").startswith("application/json")
                            ):
                                shape_bad.append(f"{headers} {body[:160]!r}")
                        elif status >= 500:
                            row.fail(f"{variants[state['variant']]}: {status} {body[:120]!r}")
                    else:
                        closed_silent += 1
                        row.fail(f"{variants[state['variant']]}: closed without an answer")
                    del pending[sock]
                    sock.close()
            hung = len(pending)
            fds_after = fd_count(pid)
            for sock in pending:
                sock.close()
            if hung:
                row.fail(f"{hung} connections not answered {timeout_s + 10} s after the last was opened", hung)
        time.sleep(1.0)
        fds_closed = fd_count(pid)
    got_408 = answers.get(408, 0)
    others = {k: v for k, v in answers.items() if k != 408}
    timing = f"answers {fmt_s(first)}–{fmt_s(last)} after the last connection" if answers else "no answers"
    row.outcome = (
        f"408: {got_408}/300 ({'/'.join(str(by_variant[v]) for v in range(3))} by head variant)"
        + (f", other: {others}" if others else "")
        + (f", hung: {hung}" if hung else "")
        + (f", closed silently: {closed_silent}" if closed_silent else "")
        + f"; {timing}; proxy fds before/during/after/after close: {fds_before}/{fds_during}/{fds_after}/{fds_closed}"
    )
    if not ctx.new_keys:
        row.outcome += " (`body_timeout_s` unknown to this code: default settings)"
    if got_408 != 300:
        row.deviate(
            f"{got_408}/300 slow bodies answered 408 ({by_variant[0]}/{by_variant[1]}/{by_variant[2]} "
            f"for: {'; '.join(variants)}); other answers {others}, hung {hung}, closed silently {closed_silent}"
        )
    if shape_bad:
        row.deviate(
            f"{len(shape_bad)} 408 answers without code request_timeout, `connection: close` or JSON, "
            f"e.g. {shape_bad[0]}"
        )
    if last is not None and last > timeout_s + 2:
        row.deviate(f"last 408 came {last:.1f} s after the connections were opened (body_timeout_s {timeout_s})")
    check_health(row)
    return row


def check_health(row: Row, limit_ms: float = 500) -> None:
    health = row.health
    if health.get("timeouts"):
        row.deviate(f"/health timed out ({PROBE_TIMEOUT_S:.0f} s) {health['timeouts']} times during the attack")
    elif health.get("max_ms") is not None and health["max_ms"] > limit_ms:
        row.deviate(f"/health took up to {health['max_ms']:.0f} ms during the attack")


def attack_many_parts(ctx: Context) -> Row:
    row = Row(2, "multipart transcription with 470,000 empty parts (23 MB)")
    parts = [
        b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n',
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
        + AUDIO
        + b"\r\n",
    ]
    empty = b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n'
    body = b"".join(parts) + empty * 470_000 + b"--b--\r\n"
    head = (
        f"POST {TRANSCRIPTIONS} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer sk-hostile\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    config = ctx.config([{"type": "local"}])
    outcome = ""
    with ctx.proxy("p2-many-parts", config) as server, probing(row, server.port):
        row.sent = 1
        started = time.monotonic()
        try:
            status, _, answer, sent_all = send_streamed(server.port, head, body, 1 << 20, 60)
            took = time.monotonic() - started
            code = error_code(answer)
            outcome = f"{status} `{code}` after {took:.2f} s" + (
                "" if sent_all else " (answered before the whole body)"
            )
            if status >= 500:
                row.fail(f"{status} {answer[:160]!r}")
            if status != 400 or code != "invalid_multipart":
                row.deviate(f"470k-part form answered {status} {answer[:200]!r} (spec: 400 invalid_multipart)")
        except (Hung, OSError) as exc:
            row.fail(describe_failure(exc))
            outcome = f"no answer: {describe_failure(exc)} after {time.monotonic() - started:.1f} s"
            row.deviate(f"470k-part form: {outcome}")
    row.outcome = f"{len(body) / 1e6:.1f} MB body: {outcome}"
    check_health(row)
    return row


def send_streamed(
    port: int, head: bytes, body_chunks: bytes | Callable[[int], bytes | None], chunk: int, deadline_s: float
) -> tuple[int, dict[str, str], bytes, bool]:
    """Send head then a body in `chunk`-byte writes, stopping early if the server answers or
    closes; then read the answer (to EOF) before the deadline."""
    end = time.monotonic() + deadline_s
    sock = socket.create_connection((HOST, port), timeout=10)
    with sock:
        sock.sendall(head)
        offset = 0
        sent_all = False
        while time.monotonic() < end:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # an answer or a close: stop sending
            piece = body_chunks[offset : offset + chunk] if isinstance(body_chunks, bytes) else body_chunks(offset)
            if not piece:
                sent_all = True
                break
            try:
                sock.settimeout(max(0.1, min(10.0, end - time.monotonic())))
                sock.sendall(piece)
            except TimeoutError:
                break  # the server stopped reading; see whether it answers
            except (BrokenPipeError, ConnectionResetError):
                break
            offset += len(piece)
        chunks = []
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise Hung(f"no answer after {offset} body bytes within {deadline_s}s")
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise Hung(f"no answer after {offset} body bytes within {deadline_s}s") from None
            except ConnectionResetError:
                if chunks:
                    break
                raise ConnectionResetError(f"connection reset after {offset} bytes, no answer") from None
            if not data:
                break
            chunks.append(data)
            # An error answer is small; stop once its declared length is in.
            raw = b"".join(chunks)
            if b"\r\n\r\n" in raw:
                _, headers, got = split_response(raw)
                length = headers.get("content-length")
                if length is not None and len(got) >= int(length):
                    break
    raw = b"".join(chunks)
    if not raw:
        raise ConnectionError(f"closed without an answer after {offset} bytes sent")
    status, headers, got = split_response(raw)
    return status, headers, got, sent_all


def attack_huge_head(ctx: Context) -> Row:
    row = Row(3, "64 MB unterminated header line, sent in 64 KB writes")
    config = ctx.config([{"type": "local"}])
    head = f"POST {CHAT} HTTP/1.1\r\nHost: {HOST}\r\nX-Fill: ".encode()
    piece = b"a" * 65536
    limit = 1024  # 64 MB
    sent = {"bytes": len(head)}

    def source(offset: int) -> bytes | None:
        if offset >= limit * len(piece):
            return None
        sent["bytes"] = len(head) + offset + len(piece)
        return piece

    with ctx.proxy("p3-huge-head", config) as server, probing(row, server.port):
        row.sent = 1
        started = time.monotonic()
        try:
            status, _, answer, _ = send_streamed(server.port, head, source, len(piece), 60)
            took = time.monotonic() - started
            code = error_code(answer)
            row.outcome = f"{status} `{code}` after {sent['bytes'] / 1e6:.2f} MB sent, {took:.2f} s"
            if status >= 500:
                row.fail(f"{status} {answer[:160]!r}")
            if status != 431 or code != "headers_too_large":
                row.deviate(f"unterminated 64 MB header: {status} {answer[:200]!r} (spec: 431 headers_too_large)")
        except (Hung, OSError) as exc:
            took = time.monotonic() - started
            row.fail(describe_failure(exc))
            row.outcome = f"no answer ({describe_failure(exc)}) after {sent['bytes'] / 1e6:.1f} MB sent, {took:.1f} s"
            row.deviate(f"unterminated 64 MB header: {row.outcome}")
        rss = rss_mb(server.process.pid)
        row.outcome += f"; proxy RSS after: {rss} MB"
    check_health(row)
    return row


def rss_mb(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return str(int(line.split()[1]) // 1024)
    except OSError:
        pass
    return "?"


def attack_many_headers(ctx: Context) -> Row:
    row = Row(4, "300,000 header lines")
    config = ctx.config([{"type": "local"}])
    body = chat("many-headers")
    head = f"POST {CHAT} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nConnection: close\r\n".encode()
    lines = b"".join(b"X-H%d: 1\r\n" % i for i in range(300_000))
    tail = f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    stream = lines + tail
    with ctx.proxy("p4-many-headers", config) as server, probing(row, server.port):
        row.sent = 1
        started = time.monotonic()
        try:
            status, _, answer, sent_all = send_streamed(server.port, head, stream, 65536, 60)
            took = time.monotonic() - started
            code = error_code(answer)
            row.outcome = (
                f"{status} `{code}` after {took:.2f} s "
                f"({'whole request sent' if sent_all else 'answered before the end of the head'})"
            )
            if status >= 500:
                row.fail(f"{status} {answer[:160]!r}")
            if status != 431 or code != "headers_too_large":
                row.deviate(f"300k headers: {status} {answer[:200]!r} (spec: 431 headers_too_large)")
        except (Hung, OSError) as exc:
            row.fail(describe_failure(exc))
            row.outcome = f"no answer ({describe_failure(exc)}) after {time.monotonic() - started:.1f} s"
            row.deviate(f"300k headers: {row.outcome}")
    check_health(row)
    return row


def run_parallel(work: list[Any], clients: int, port: int, job: Callable[[Client, Any], None]) -> None:
    """`job(client, item)` for every item, on `clients` keep-alive connections at once."""
    slices = [work[i::clients] for i in range(clients)]

    def worker(items: list[Any]) -> None:
        client = Client(port)
        try:
            for item in items:
                job(client, item)
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(worker, slices))


def attack_model_labels(ctx: Context) -> Row:
    row = Row(5, "5,000 distinct `model` values, `Cache-Control: only-if-cached`")
    config = ctx.config([{"type": "local"}])
    lock = threading.Lock()
    statuses: dict[int, int] = {}
    no_retry_header: list[str] = []
    run = uuid.uuid4().hex[:8]

    def job(client: Client, i: int) -> None:
        body = json.dumps({"model": f"model-{run}-{i}", "messages": [{"role": "user", "content": "hi"}]}).encode()
        try:
            status, headers, answer = client.request(
                "POST", CHAT, body, {**JSON_HEADERS, "cache-control": "only-if-cached"}
            )
        except Exception as exc:
            with lock:
                row.fail(describe_failure(exc))
            return
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
            if status >= 500 and status != 504:
                row.fail(f"{status} {answer[:120]!r}")
            if status == 504 and headers.get("x-should-retry") != "false" and len(no_retry_header) < 3:
                no_retry_header.append(f"{headers}")

    with ctx.proxy("p5-model-labels", config) as server:
        before = len(fetch_metrics(server.port).encode())
        with probing(row, server.port):
            row.sent = 5000
            run_parallel(list(range(5000)), 8, server.port, job)
        text = fetch_metrics(server.port)
    models = {labels.get("model") for name, labels, _ in metric_samples(text) if name == "llmcache_requests_total"}
    models.discard(None)
    shown = ", ".join(sorted(models)[:4]) + (" …" if len(models) > 4 else "")
    row.outcome = (
        f"answers {dict(sorted(statuses.items()))}; /metrics {before:,} → {len(text.encode()):,} bytes; "
        f"{len(models)} `model` label values ({shown})"
    )
    if statuses.get(504, 0) != 5000:
        row.deviate(f"only-if-cached misses: {statuses} (spec: 504 each)")
    if no_retry_header:
        row.deviate(f"504 without `x-should-retry: false`, e.g. headers {no_retry_header[0][:300]}")
    if len(models) > 1:
        row.deviate(
            f"llmcache_requests_total has {len(models)} model label values after 5000 unseen models (spec: one, `other`)"
        )
    check_health(row)
    return row


DISK_BENCH = r"""
import asyncio, hashlib, json, os, sys, tempfile, time
from app.tiers.disk import DiskTier

async def main(root):
    value = os.urandom(1024)
    keys = [hashlib.sha256(b"k%d" % i).hexdigest() for i in range(20480)]
    out = {}
    tier = DiskTier("bench-batch", os.path.join(root, "batch"), 2**31)
    native = "set_many" in type(tier).__dict__
    begin = time.perf_counter(); done = 0
    while done < len(keys) and time.perf_counter() - begin < 15:
        await tier.set_many([(k, value) for k in keys[done:done + 256]], 3600); done += 256
    out["batch"] = done / (time.perf_counter() - begin); out["batch_n"] = done; out["native_set_many"] = native
    await tier.close()
    tier = DiskTier("bench-single", os.path.join(root, "single"), 2**31)
    begin = time.perf_counter(); done = 0
    while done < 5000 and time.perf_counter() - begin < 10:
        await tier.set(keys[done], value, 3600); done += 1
    out["single"] = done / (time.perf_counter() - begin); out["single_n"] = done
    await tier.close()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1]))
"""


def disk_microbench(ctx: Context) -> dict[str, Any]:
    root = ctx.work / "disk-microbench"
    root.mkdir(exist_ok=True)
    try:
        done = subprocess.run(
            [ctx.target.python, "-c", DISK_BENCH, str(root)],
            cwd=ctx.target.repo,
            env={**os.environ, **ctx.target.env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        return {"error": describe_failure(exc)}


def attack_disk_burst(ctx: Context) -> tuple[Row, dict[str, Any]]:
    row = Row(6, "disk-only tier: 3,200 distinct misses from 64 keep-alive clients")
    config = ctx.config([ctx.disk()])
    lock = threading.Lock()
    run = uuid.uuid4().hex[:8]
    bodies = [chat(f"burst-{run}-{i}") for i in range(3200)]
    first_statuses: dict[str, int] = {}
    replay: dict[str, int] = {}
    timeline: list[tuple[float, int]] = []
    with ctx.proxy("p6-disk-burst", config) as server:
        stop = threading.Event()
        origin = time.monotonic()

        def watch() -> None:
            while not stop.is_set() and time.monotonic() - origin < 120:
                entries = tier_entries(server.port)
                if entries is not None:
                    timeline.append((time.monotonic() - origin, entries))
                stop.wait(0.1)

        watcher = threading.Thread(target=watch, daemon=True)

        def job(into: dict[str, int]) -> Callable[[Client, bytes], None]:
            def send(client: Client, body: bytes) -> None:
                try:
                    status, headers, answer = client.request("POST", CHAT, body, JSON_HEADERS)
                except Exception as exc:
                    with lock:
                        row.fail(describe_failure(exc))
                        into["error"] = into.get("error", 0) + 1
                    return
                with lock:
                    label = headers.get("x-cache-status", f"status {status}") if status == 200 else f"status {status}"
                    into[label] = into.get(label, 0) + 1
                    if status >= 500:
                        row.fail(f"{status} {answer[:120]!r}")

            return send

        with probing(row, server.port):
            watcher.start()
            burst_start = time.monotonic()
            run_parallel(bodies, 64, server.port, job(first_statuses))
            burst_s = time.monotonic() - burst_start
            row.sent = len(bodies)
            text = fetch_metrics(server.port)
            dropped = sum(v for name, _, v in metric_samples(text) if name == "llmcache_tier_writes_dropped_total")
            has_dropped = "llmcache_tier_writes_dropped" in text
            # Wait for the entries to land: all of them, or no change for 3 s (at most 30 s).
            settle_start = time.monotonic()
            last_change, last_seen = time.monotonic(), None
            while time.monotonic() - settle_start < 30:
                current = timeline[-1][1] if timeline else None
                if current is not None and current >= len(bodies):
                    break
                if current != last_seen:
                    last_seen, last_change = current, time.monotonic()
                elif time.monotonic() - last_change > 3:
                    break
                time.sleep(0.1)
            stop.set()
            watcher.join(5)
            landed = tier_entries(server.port)
            run_parallel(bodies, 64, server.port, job(replay))
            row.sent += len(bodies)
    hits = replay.get("hit", 0)
    row.lost = len(bodies) - hits
    # Landing rate: from the first sample that saw entries to the first that saw the final count.
    rate = None
    final = timeline[-1][1] if timeline else 0
    nonzero = [(t, n) for t, n in timeline if n > 0]
    if nonzero and final:
        t_first, n_first = nonzero[0]
        t_last = next(t for t, n in timeline if n == final)
        if t_last > t_first:
            rate = (final - n_first) / (t_last - t_first)
    micro = disk_microbench(ctx)
    request_rate = len(bodies) / burst_s if burst_s else 0
    row.outcome = (
        f"burst {burst_s:.1f} s ({request_rate:.0f} req/s), answers {dict(sorted(first_statuses.items()))}; "
        f"writes dropped: {int(dropped) if has_dropped else 'n/a (no metric)'}; entries on disk: {landed}; "
        f"landing rate {'—' if rate is None else f'{rate:.0f}'} entries/s; replay {dict(sorted(replay.items()))}"
    )
    if has_dropped and dropped:
        row.deviate(f"llmcache_tier_writes_dropped_total = {int(dropped)} after a 64-connection burst (spec: 0)")
    if row.lost:
        row.deviate(f"{row.lost} of {len(bodies)} burst entries were not hits on replay (entries on disk: {landed})")
    check_health(row, 1000)
    return row, micro


def attack_read_your_writes(ctx: Context) -> Row:
    row = Row(7, "read your writes, disk-only tier: 500 × (miss, then the same request at once)")
    config = ctx.config([ctx.disk()])
    run = uuid.uuid4().hex[:8]
    second: dict[str, int] = {}
    with ctx.proxy("p7-read-your-writes", config) as server, probing(row, server.port):
        client = Client(server.port)
        try:
            for i in range(500):
                body = chat(f"ryw-{run}-{i}")
                for attempt in (0, 1):
                    row.sent += 1
                    try:
                        status, headers, answer = client.request("POST", CHAT, body, JSON_HEADERS)
                    except Exception as exc:
                        row.fail(describe_failure(exc))
                        continue
                    if status >= 500:
                        row.fail(f"{status} {answer[:120]!r}")
                    if attempt:
                        label = headers.get("x-cache-status", f"status {status}")
                        second[label] = second.get(label, 0) + 1
        finally:
            client.close()
    row.lost = 500 - second.get("hit", 0)
    row.outcome = f"second requests: {dict(sorted(second.items()))}"
    if row.lost:
        row.deviate(f"{row.lost}/500 immediate repeats after a miss were not hits with a disk-only tier: {second}")
    check_health(row)
    return row


def attack_cross_tenant(ctx: Context) -> Row:
    row = Row(8, "cross-tenant: stored with `api-key: A`, asked by 4 other scopes")
    config = ctx.config([{"type": "local"}])
    probes = {
        "api-key: B": {"api-key": "B"},
        "x-api-key: A": {"x-api-key": "A"},
        "no credential": {},
        "authorization: Bearer A": {"authorization": "Bearer A"},
    }
    leaks: dict[str, int] = {name: 0 for name in probes}
    same_scope_hits = 0
    run = uuid.uuid4().hex[:8]
    examples: list[str] = []
    with ctx.proxy("p8-cross-tenant", config) as server, probing(row, server.port):
        client = Client(server.port)
        try:
            for i in range(25):
                body = chat(f"tenant-{run}-{i}")
                store = {"content-type": "application/json", "api-key": "A"}
                for attempt in range(2):
                    row.sent += 1
                    try:
                        status, headers, answer = client.request("POST", CHAT, body, store)
                    except Exception as exc:
                        row.fail(describe_failure(exc))
                        continue
                    if status >= 500:
                        row.fail(f"{status} {answer[:120]!r}")
                    if attempt and headers.get("x-cache-status") == "hit":
                        same_scope_hits += 1
                for name, creds in probes.items():
                    row.sent += 1
                    try:
                        status, headers, answer = client.request(
                            "POST", CHAT, body, {"content-type": "application/json", **creds}
                        )
                    except Exception as exc:
                        row.fail(describe_failure(exc))
                        continue
                    if status >= 500:
                        row.fail(f"{status} {answer[:120]!r}")
                    if headers.get("x-cache-status") == "hit":
                        leaks[name] += 1
                        if len(examples) < 2:
                            examples.append(f"stored with `api-key: A`, then `{name}` → {status} hit")
        finally:
            client.close()
        extras = wrong_tenant_extras(ctx, server.port, row, run)
    total = sum(leaks.values())
    row.lost = None
    row.outcome = (
        f"leaks: {total}/100 ({', '.join(f'{k}: {v}' for k, v in leaks.items())}); "
        f"same-scope repeats that hit: {same_scope_hits}/25; {extras}"
    )
    if total:
        row.deviate(f"{total} hits served to another credential scope: {leaks}; e.g. {examples[0]}")
    if same_scope_hits != 25:
        row.deviate(f"only {same_scope_hits}/25 same-scope repeats hit (the leak count means little)")
    check_health(row)
    return row


def wrong_tenant_extras(ctx: Context, port: int, row: Row, run: str) -> str:
    """A credential header sent twice (400, upstream not called), and the query string
    (forwarded unchanged, part of the key)."""
    duplicates: dict[str, str] = {}
    for name in ("authorization", "api-key", "x-api-key"):
        values = ("Bearer A", "Bearer B") if name == "authorization" else ("A", "B")
        body = chat(f"dup-{run}-{name}")
        headers = [("content-type", "application/json"), (name, values[0]), (name, values[1])]
        calls = upstream_chat_calls(ctx.upstream_port)
        row.sent += 1
        try:
            status, got, answer = raw_request(port, "POST", CHAT, headers, body)
        except (Hung, OSError) as exc:
            row.fail(f"duplicate {name}: {describe_failure(exc)}")
            continue
        calls = upstream_chat_calls(ctx.upstream_port) - calls
        duplicates[name] = f"{status} {error_code(answer)}"
        if status >= 500:
            row.fail(f"duplicate {name}: {status} {answer[:120]!r}")
        if status != 400 or error_code(answer) != "duplicate_credential_header" or calls:
            row.deviate(
                f"`{name}` sent twice ({values[0]!r}, {values[1]!r}): {status} {answer[:200]!r}, "
                f"upstream calls {calls} (spec: 400 duplicate_credential_header, upstream not called)"
            )
    body = chat(f"query-{run}")
    query_statuses = []
    forwarded = []
    for version in ("2024-06-01", "2024-07-01"):
        row.sent += 1
        path = f"{CHAT}?api-version={version}"
        headers = {"content-type": "application/json", "api-key": "A"}
        calls = upstream_chat_calls(ctx.upstream_port)
        try:
            status, got, answer = raw_request(port, "POST", path, headers, body)
        except (Hung, OSError) as exc:
            row.fail(f"query string: {describe_failure(exc)}")
            continue
        query_statuses.append(f"{status} {got.get('x-cache-status')}")
        if status >= 500:
            row.fail(f"POST {path}: {status} {answer[:160]!r}")
            if version == "2024-06-01":
                row.deviate(
                    f"`POST {path}` (headers {headers}, a 1 KB chat body) → {status} "
                    f"x-cache-status {got.get('x-cache-status')!r} {answer[:200]!r} (spec: forwarded with its query)"
                )
        if upstream_chat_calls(ctx.upstream_port) > calls:
            _, _, stats = raw_request(ctx.upstream_port, "GET", "/_stats", {}, b"")
            records = json.loads(stats).get("requests") or []
            forwarded.append(
                next(
                    (
                        r.get("query")
                        for r in reversed(records)
                        if isinstance(r, dict) and str(r.get("path", "")).endswith("/chat/completions")
                    ),
                    None,
                )
            )
        else:
            forwarded.append(None)  # not called
    if query_statuses[-1:] == ["200 hit"]:
        row.deviate("`?api-version=2024-07-01` was served the entry of `?api-version=2024-06-01` (spec: miss)")
    if forwarded[-1:] not in ([None], ["api-version=2024-07-01"]):
        row.deviate(f"the query string reached the upstream as {forwarded[-1]!r} (spec: unchanged)")
    return (
        f"credential header sent twice: {duplicates}; query `?api-version=` 06-01 then 07-01: "
        f"{' / '.join(query_statuses)}, upstream saw {forwarded} (None: not called)"
    )


def attack_poisoning(ctx: Context) -> Row:
    row = Row(9, 'poisoning: bad 2xx answers, `"stream": "true"`, 2^64-sized numbers')
    config = ctx.config([{"type": "local"}])
    run = uuid.uuid4().hex[:8]
    stored: dict[str, int] = {}
    firsts: dict[str, str] = {}
    upstream_short: list[str] = []
    differs: list[str] = []
    parts: list[str] = []

    def send(port: int, body: bytes, headers: dict[str, str], what: str) -> tuple[int, dict[str, str], bytes] | None:
        row.sent += 1
        try:
            status, got, answer = raw_request(port, "POST", CHAT, {**JSON_HEADERS, **headers}, body)
        except (Hung, OSError) as exc:
            row.fail(f"{what}: {describe_failure(exc)}")
            return None
        if status >= 500:
            row.fail(f"{what}: {status} {answer[:120]!r} (request body {body[:120]!r}…)")
        return status, got, answer

    def direct(body: bytes, mode: str) -> tuple[int, dict[str, str], bytes] | None:
        try:
            return raw_request(ctx.upstream_port, "POST", CHAT, {**JSON_HEADERS, "x-fake-bad": mode}, body)
        except (Hung, OSError):
            return None

    with ctx.proxy("p9-poisoning", config) as server, probing(row, server.port):
        if ctx.bad_modes:
            for mode in BAD_MODES:
                for stream in (False, True):
                    label = f"{mode}{' stream' if stream else ''}"
                    body = chat(f"bad-{run}-{label}", **({"stream": True} if stream else {}))
                    calls = upstream_chat_calls(ctx.upstream_port)
                    first = send(server.port, body, {"x-fake-bad": mode}, f"x-fake-bad {label}, first")
                    second = send(server.port, body, {"x-fake-bad": mode}, f"x-fake-bad {label}, second")
                    calls = upstream_chat_calls(ctx.upstream_port) - calls
                    own = direct(body, mode)
                    if first:
                        firsts[label] = f"{first[0]} {first[1].get('x-cache-status')}"
                        if own and (first[0], same_ids(first[2])) != (own[0], same_ids(own[2])):
                            differs.append(label)
                            if len(differs) == 1:
                                row.deviate(
                                    f"`x-fake-bad: {label}`: the proxy's answer is not what the upstream sends: "
                                    f"proxy {first[0]} {first[2][:300]!r} vs upstream {own[0]} {own[2][:300]!r} "
                                    f"(ids normalised)"
                                )
                        if first[1].get("x-cache-status") != "miss":
                            row.deviate(
                                f"`x-fake-bad: {label}` first answer x-cache-status "
                                f"{first[1].get('x-cache-status')!r} (spec: miss)"
                            )
                    if second and second[1].get("x-cache-status") in ("hit", "coalesced"):
                        stored[label] = 1
                        row.deviate(
                            f"`x-fake-bad: {mode}` ({'stream' if stream else 'non-stream'}): the bad answer "
                            f"was stored, second request {second[0]} {second[1].get('x-cache-status')} "
                            f"{second[2][:160]!r}"
                        )
                    if calls != 2:
                        upstream_short.append(f"{label}: {calls}")
            bad_total = sum(stored.values())
            parts.append(
                f"bad answers stored: {bad_total}/{len(BAD_MODES) * 2} (first answers: "
                + ", ".join(f"{k} {v}" for k, v in firsts.items())
                + ")"
            )
            if upstream_short:
                row.deviate(f"upstream calls per pair of bad-answer requests not 2: {upstream_short}")
            parts.append(f"answers unlike the upstream's own: {len(differs)}/{len(BAD_MODES) * 2}")
        else:
            parts.append("bad answers: skipped (this fake upstream has no `x-fake-bad`)")
        poisoned = 0
        string_first: dict[str, int] = {}
        for i in range(10):
            plain = chat(f"stream-string-{run}-{i}")
            tainted = chat(f"stream-string-{run}-{i}", stream="true")
            first = send(server.port, tainted, {}, '`"stream": "true"`')
            if first:
                key = f"{first[0]} {error_code(first[2]) or first[1].get('x-cache-status')}"
                string_first[key] = string_first.get(key, 0) + 1
                if first[0] != 400 or error_code(first[2]) != "invalid_request":
                    if i == 0:
                        row.deviate(
                            f'`"stream": "true"` answered {first[0]} {first[2][:160]!r} (spec: 400 invalid_request)'
                        )
            second = send(server.port, plain, {}, 'plain request after `"stream": "true"`')
            if second and second[1].get("x-cache-status") == "hit":
                poisoned += 1
                if poisoned == 1:
                    row.deviate(f'a plain request hit the entry of a `"stream": "true"` request: {second[2][:160]!r}')
        parts.append(f'`"stream": "true"` → {string_first}, poisoned entries: {poisoned}/10')
        collisions = 0
        for i in range(10):
            bodies = []
            for maximum in ("18446744073709552233", "18446744073709552234"):
                text = json.loads(chat(f"tool-max-{run}-{i}"))
                text["tools"] = [
                    {
                        "type": "function",
                        "function": {
                            "name": "pick",
                            "parameters": {"type": "object", "properties": {"n": {"type": "integer", "maximum": 0}}},
                        },
                    }
                ]
                raw = json.dumps(text).replace('"maximum": 0', f'"maximum": {maximum}')
                bodies.append(raw.encode())
            first = send(server.port, bodies[0], {}, "tool maximum …233")
            second = send(server.port, bodies[1], {}, "tool maximum …234")
            if second and second[1].get("x-cache-status") == "hit":
                collisions += 1
                if collisions == 1:
                    row.deviate(f"tool maximum …233 and …234 shared an entry (second: {second[0]} hit)")
            if i == 0 and first:
                parts.append(f"tool-schema first answer {first[0]} {first[1].get('x-cache-status')}")
        parts.append(f"maximum …233 vs …234 collisions: {collisions}/10")
        huge: list[str] = []
        for spelling in ("1e20", "18446744073709551616", "1e400"):
            raw = chat(f"huge-{run}-{spelling}").decode().replace('"temperature": 0', f'"temperature": {spelling}')
            got = send(server.port, raw.encode(), {}, f"temperature {spelling}")
            if got:
                huge.append(f"{spelling}: {got[0]}")
                if got[0] >= 500:
                    row.deviate(f'`"temperature": {spelling}` → {got[0]} {got[2][:200]!r} (spec: never a 5xx)')
        parts.append(f"top-level `temperature` ≥ 2^64: {', '.join(huge)}")
    row.lost = None
    row.outcome = "; ".join(parts)
    check_health(row)
    return row


def same_ids(body: bytes) -> bytes:
    """The body with the fake's per-call ids made comparable (they differ from call to call)."""
    return re.sub(rb"(chatcmpl-|cmpl-|call_|fake-)\d+", rb"\1N", body)


def attack_port_in_use(ctx: Context) -> Row:
    row = Row(10, "`llmcache serve` on a port already in use (local + disk tiers)")
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind((HOST, 0))
    holder.listen(16)
    port = holder.getsockname()[1]
    config = ctx.config([{"type": "local"}, ctx.disk()])
    path = ctx.write_config(config)
    try:
        child = ctx.fleet.spawn(
            "p10-port-in-use",
            ctx.target.cli("serve", "--config", str(path), "--port", str(port)),
            ctx.target.repo,
            ctx.target.env,
        )
        started = time.monotonic()
        row.sent = 1
        try:
            code: int | None = child.wait(15)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - started
        ctx.fleet.stop(child)
    finally:
        holder.close()
    log = (ctx.fleet.log_dir / "p10-port-in-use.log").read_text(errors="replace")
    # "127.0.0.1:P" (ours) or uvicorn's "('127.0.0.1', P)": either names the address.
    names = f"{HOST}:{port}" in log or f"'{HOST}', {port})" in log
    if code is None:
        row.failed = 1
        row.outcome = "hung: still running after 15 s (killed)"
        row.deviate(f"`llmcache serve --port {port}` (port held) still running after 15 s")
    else:
        row.outcome = f"exit code {code} after {took:.1f} s; message names {HOST}:{port}: {'yes' if names else 'no'}"
        if code == 0 or took > 5 or not names:
            last = [line for line in log.splitlines() if line.strip()][-1:] or [""]
            row.deviate(
                f"port in use: exit {code} after {took:.1f} s, address named: {names}; last log line {last[0][:200]!r}"
            )
    return row


ATTACKS: dict[int, Callable[[Context], Any]] = {
    1: attack_slow_bodies,
    2: attack_many_parts,
    3: attack_huge_head,
    4: attack_many_headers,
    5: attack_model_labels,
    6: attack_disk_burst,
    7: attack_read_your_writes,
    8: attack_cross_tenant,
    9: attack_poisoning,
    10: attack_port_in_use,
}
NAMES = {
    1: "300 bodies shorter than their Content-Length",
    2: "multipart with 470,000 empty parts",
    3: "64 MB unterminated header",
    4: "300,000 headers",
    5: "5,000 distinct models, only-if-cached",
    6: "disk burst, 64 clients",
    7: "read your writes, disk-only",
    8: "cross-tenant",
    9: "poisoning",
    10: "port already in use",
}


# --------------------------------------------------------------------------- run


def supports_new_keys(ctx: Context) -> bool:
    path = ctx.write_config(ctx.config([{"type": "local"}]) | {"server": {"host": HOST, "body_timeout_s": 2}})
    done = subprocess.run(
        ctx.target.cli("check-config", str(path)),
        cwd=ctx.target.repo,
        env={**os.environ, **ctx.target.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode == 0


def fake_has_bad_modes(port: int) -> bool:
    try:
        status, headers, _ = raw_request(port, "POST", CHAT, {**JSON_HEADERS, "x-fake-bad": "html"}, chat("probe"), 10)
    except (Hung, OSError):
        return False
    return status == 200 and headers.get("content-type", "").startswith("text/html")


def run(repo: Path, out: Path, only: list[int]) -> int:
    begun = time.monotonic()
    target = Target(repo)
    label = "this repository" if repo == REPO else str(repo)
    log_dir = REPO / "bench" / "results" / "logs" / f"hostile-{repo.name}"
    log_dir.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    meta: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="llmcache-hostile-") as tmp, Fleet(log_dir) as fleet:
        upstream_port = procs.free_port()
        fleet.serve(
            "fake-upstream", [PYTHON, "-m", "tests.fake_upstream", "--port", str(upstream_port)], REPO, upstream_port
        )
        ctx = Context(target, fleet, Path(tmp), upstream_port, fake_has_bad_modes(upstream_port))
        ctx.new_keys = supports_new_keys(ctx)
        commit, dirty = target.commit()
        for number in only:
            print(f"[hostile] {number}. {NAMES[number]} …", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                result = ATTACKS[number](ctx)
            except procs.BenchError as exc:
                result = Row(number, NAMES[number], outcome=f"proxy did not start: {str(exc)[:300]}")
                result.deviate(result.outcome)
            except Exception as exc:  # the runner's own failure: record it, go on with the next attack
                result = Row(number, NAMES[number], outcome=f"runner error: {describe_failure(exc)}")
                result.deviate(result.outcome)
            if isinstance(result, tuple):
                result, micro = result
                if "error" in micro:
                    meta["disk_rate"] = f"micro-benchmark failed: {micro['error']}"
                else:
                    how = (
                        "one transaction per batch"
                        if micro.get("native_set_many")
                        else "this code's set_many: concurrent single sets"
                    )
                    meta["disk_rate"] = (
                        f"`set_many`, batches of 256 × 1 KB ({how}): {micro['batch']:,.0f} entries/s "
                        f"({micro['batch_n']} entries); `set` one at a time: {micro['single']:,.0f} entries/s "
                        f"({micro['single_n']} entries)"
                    )
                    meta["disk_micro"] = micro
            print(
                f"[hostile] {number}. done in {time.monotonic() - started:.1f} s: {result.outcome}",
                file=sys.stderr,
                flush=True,
            )
            rows.append(result)
        meta.update(
            label=label,
            repo=str(repo),
            commit=commit,
            dirty=dirty,
            date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            cpus=os.cpu_count(),
            bad_modes="yes" if ctx.bad_modes else "no (those rows skipped)",
            new_keys="yes" if ctx.new_keys else "no (left out of its configs)",
        )
    meta["seconds"] = time.monotonic() - begun
    report = markdown(rows, meta)
    print(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1))
    return 0


def compare(before_path: Path, after_path: Path) -> str:
    """A side-by-side Markdown table of two runs' JSON files."""
    before = json.loads(before_path.read_text())
    after = json.loads(after_path.read_text())
    old = {r["num"]: r for r in before["rows"]}
    lines = [
        f"before: `{before['meta']['commit']}`; after: `{after['meta']['commit']}`{after['meta']['dirty']}",
        "",
        "| # | attack | sent (before / after) | failed | entries lost | /health p50 / max, before | /health p50 / max, after | before | after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for new in after["rows"]:
        prev = old.get(new["num"], {})

        def pair(key: str, prev: dict[str, Any] = prev, new: dict[str, Any] = new) -> str:
            a = prev.get(key, "—")
            b = new.get(key)
            return f"{'—' if a is None else a} / {'—' if b is None else b}"

        lines.append(
            f"| {new['num']} | {NAMES[new['num']]} | {pair('sent')} | {pair('failed')} | {pair('lost')} | "
            f"{health_cell(prev.get('health') or {})} | {health_cell(new['health'])} | {prev.get('outcome', '—')} | {new['outcome']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="llmcache under hostile clients and broken peers")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose llmcache to attack (default: this one)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "hostile.md")
    parser.add_argument("--only", default="", help="comma-separated attack numbers (default: all)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE_JSON", "AFTER_JSON"))
    parser.add_argument("--probe-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe_port:
        probe_main(args.probe_port)
        return 0
    if args.compare:
        print(compare(*args.compare), end="")
        return 0
    only = [int(x) for x in args.only.split(",") if x.strip()] or sorted(ATTACKS)
    return run(args.repo.resolve(), args.out.resolve(), only)


if __name__ == "__main__":
    sys.exit(main())
