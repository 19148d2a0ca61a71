"""Route fuzzer: random requests at every cached route of a real `llmcache serve`.

    .venv/bin/python -m bench.fuzz_routes --minutes 3 [--seed N] [--concurrency 4]

It starts the fake upstream (tests.fake_upstream) in-process and `llmcache serve` as a
subprocess (local + disk tiers under a temporary directory, admin token set) on loopback,
then sends generated requests to POST /v1/chat/completions, /v1/completions,
/v1/embeddings and /v1/audio/transcriptions, with and without the /v1 prefix:
OpenAI-looking JSON bodies mutated (wrong types, huge and beyond-double numbers, deep
nesting, unicode, missing fields, `cache` objects with random controls, `stream` of any
type, duplicate keys, broken JSON), random multipart bodies (random parts, boundaries,
bytes, malformed framing, too many parts), and random headers (x-cache-* controls,
Cache-Control, content types, credentials including duplicates). Some requests are
repeats of earlier ones (hits, stream ⇄ non-stream replays) and some are bursts of
identical requests in parallel (coalescing). The only `x-fake-*` header it sends is
`x-fake-status` on some repeats (the upstream fails: a stale answer or the failure passed
on), so the fake upstream answers every other request it understands.

Also the newer features: `x-cache-tags`, `max-stale` / `stale-if-error` (headers, body,
Cache-Control), the header, model and credential the three tenant policies of the served
configuration match by (FUZZ_POLICIES), `traceparent` / `tracestate` (tracing on when the
otel extra is installed, spans exported to a sink), and the admin routes PUT
/cache/entries, POST /cache/explain and POST /cache/invalidate with generated and mutated
documents. Invariants checked besides: `x-cache-policy` names the first policy the request
matches; a sample of keys equals what /cache/explain says; a seed replayed with
only-if-cached is a hit of its key; a tagged entry is not served after its tag's
invalidation; `warning` comes with, and only with, `x-cache-status: stale`.

A finding is:
- a 5xx response (the fake upstream only answers 5xx when asked, which never happens
  here; the only 5xx expected is the 504 of `Cache-Control: only-if-cached` on a miss,
  and that one must carry `x-should-retry: false`);
- a request that takes more than 10 s, or gets no response at all;
- an error the proxy answers itself that is not OpenAI-shaped
  (`{"error": {"message": str, "type": str, "code": str}}`, application/json);
- a 2xx answer on a cached route without `x-cache-status`;
- an ERROR (or a traceback) in the server's log.

The summary lists requests by status and by route, and every finding with the request
that triggered it (findings of the same kind and answer are grouped). Every finding is
also written in full to bench/results/fuzz_routes.jsonl. Exit status 1 if there is any
finding. tests/test_fuzz_routes.py runs the same generator, briefly, inside the suite.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import http.server
import importlib.util
import json
import logging
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.control import CONTROLS

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
HANG_S = 10.0
CLIENT_TIMEOUT_S = HANG_S + 1.0  # a request still unanswered by then is a hang
ADMIN_TOKEN = "fuzz-admin-token"
ROUTES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/audio/transcriptions",
    "/v1/messages",
    "/v1/responses",
)
ADMIN_ROUTES = ("/cache/entries", "/cache/explain", "/cache/invalidate")
# Every cached route (the admin routes describe requests for any of them).
CACHED_ROUTES = ROUTES + (
    "/v1/audio/translations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/images/variations",
    "/v1/audio/speech",
    "/v1/rerank",
    "/v1/moderations",
)
ANTHROPIC_ROUTES = frozenset(("/v1/messages",))
CALL_TYPE_OF = {route: route.rsplit("/", 1)[-1] for route in ROUTES}
CALL_TYPE_OF["/v1/chat/completions"] = "chat"
UPSTREAM_FAILURE_CODES = frozenset(("upstream_unreachable", "upstream_timeout", "upstream_protocol_error"))

Headers = list[tuple[bytes, bytes]]


# =========================================================================== requests


@dataclass
class FuzzRequest:
    path: str
    headers: Headers
    body: bytes
    note: str  # what the generator did
    template: Any = None  # the JSON body as a Python object, when there is one (for repeats)
    fuzz_id: bytes = b""  # sent as x-fuzz-id, so the fake upstream's side can be looked up
    method: str = "POST"
    answer_id: bytes = b""  # the id of the answer its miss got (the fake numbers its answers)

    @property
    def route(self) -> str:
        path = self.path.split("?", 1)[0]
        return path if path.startswith(("/v1/", "/cache/")) else "/v1" + path

    @property
    def admin(self) -> bool:
        return self.path.startswith("/cache/")

    def describe(self, limit: int = 700) -> str:
        lines = [
            f"{self.method} {self.path}   [{self.note}]"
            + (f"  x-fuzz-id {self.fuzz_id.decode()}" if self.fuzz_id else "")
        ]
        for name, value in self.headers:
            shown = value if len(value) <= 200 else value[:200] + b"...(%d bytes)" % len(value)
            lines.append(f"  {name.decode('latin-1')}: {_show(shown)}")
        if len(self.headers) > 40:
            lines = lines[:41] + [f"  ... {len(self.headers)} headers in all"]
        lines.append(f"  body ({len(self.body)} bytes): {_show(self.body, limit)}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "note": self.note,
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in self.headers],
            "body_b64": base64.b64encode(self.body).decode(),
        }


def _show(data: bytes, limit: int = 700) -> str:
    text = repr(data[:limit])
    return text + (f" ...(+{len(data) - limit} bytes)" if len(data) > limit else "")


class Raw:
    """A literal piece of JSON text (numbers a Python float cannot hold, NaN, ...)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text!r})"


class Dupes(dict):  # type: ignore[type-arg]
    """An object whose JSON text repeats some keys: `extra` members are written after the
    ordinary ones."""

    def __init__(self, base: dict[str, Any], extra: list[tuple[str, Any]]) -> None:
        super().__init__(base)
        self.extra = extra


def to_json(value: Any, rng: random.Random, fancy: bool = False) -> str:
    """JSON text of `value`; `fancy` varies whitespace and string escapes (same meaning)."""
    out: list[str] = []
    _write(value, rng, fancy, out)
    return "".join(out)


def _write(value: Any, rng: random.Random, fancy: bool, out: list[str]) -> None:
    if fancy and rng.random() < 0.2:
        out.append(rng.choice((" ", "\n", "\t", "\r\n  ")))
    if isinstance(value, Raw):
        out.append(value.text)
    elif value is None or isinstance(value, (bool, int, float)):
        out.append(json.dumps(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=fancy and rng.random() < 0.5))
    elif isinstance(value, dict):
        members = list(value.items()) + list(getattr(value, "extra", []))
        out.append("{")
        for index, (name, item) in enumerate(members):
            if index:
                out.append(",")
            out.append(json.dumps(name, ensure_ascii=fancy and rng.random() < 0.5))
            out.append(":")
            _write(item, rng, fancy, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, rng, fancy, out)
        out.append("]")
    else:
        out.append(json.dumps(str(value)))


def encode_text(text: str) -> bytes:
    # surrogatepass: a lone surrogate written raw becomes invalid UTF-8 in the body.
    return text.encode("utf-8", "surrogatepass")


# =========================================================================== generator

MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "fake-reasoning-model",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "whisper-1",
)
PHRASES = (
    "hi",
    "hello there",
    "what is 2+2?",
    "Summarize: the cat sat on the mat.",
    "héllo wörld",
    "日本語のテキスト",
    "emoji 😀🎉",
    "tab\tand\nnewline",
    "",
    " ",
    'quote " and backslash \\',
    "a" * 300,
)
HUGE_NUMBERS = (
    "1e20",
    "-1e20",
    "1e400",
    "-1e400",
    "1e-400",
    "18446744073709552233",
    "18446744073709551616",
    "9223372036854775808",
    "-9223372036854775809",
    "1e999999999",
    "-1e-999999999",
    "0.1000000000000000000001",
    "-0",
    "-0.0",
    "1.0",
    "1e0",
    "100e-2",
    "1" + "0" * 5000,
    "123456789012345678901234567890.5",
    "1.7976931348623157e308",
    "5e-324",
    "4.9e-325",
    "1E+2",
    "2.50",
)
WEIRD_STRINGS = (
    "\x00",
    "\ud800",
    "\udfff",
    "a\ud83d",
    "\u202eRTL",
    "e\u0301",
    "\ufeff",
    "\u2028\u2029",
    "😀" * 50,
    "\\u0041",
    "%00",
    "${jndi:x}",
    "../../etc/passwd",
    "<script>",
    "null",
    "true",
    "1e400",
    " ",
    "",
    "x" * 5000,
    "\r\n\r\n",
    "Ω≈ç√∫",
    "\U0010ffff",
)
CONTROL_NAMES = CONTROLS
BODY_CONTROL_VALUES: tuple[Any, ...] = (
    60,
    0,
    -1,
    1.5,
    3600,
    True,
    False,
    None,
    [],
    {},
    "abc",
    "60",
    "true",
    "ns",
    "team-a",
    "abc\n",
    "a" * 200,
    "../x",
    "ns/x",
    "ns.1",
    "  ",
    "-ns",
    Raw("1e30"),
    Raw("1e400"),
    Raw("315360001"),
    Raw("315360000"),
    Raw("-0"),
    Raw("18446744073709552233"),
    Raw("0.5"),
    Raw("1e-400"),
    "temperature,seed",
    "",
    ["model"],
)
HEADER_CONTROL_VALUES = (
    "60",
    "0",
    "-1",
    "1e30",
    "1e400",
    "nan",
    "inf",
    "-inf",
    "abc",
    "",
    " ",
    "true",
    "false",
    "TRUE",
    " yes ",
    "1.5",
    "0x10",
    "315360001",
    "315360000",
    "team-a",
    "ns\t",
    "a" * 200,
    "ns/x",
    "1_000",
    "+5",
    "5 ",
    "1e-400",
    "0.5",
    "2",
    "no",
    "on",
    "temperature, seed",
    "model",
    ",,",
    "\xe9",
    "ns.1",
)
CACHE_CONTROL = (
    "no-cache",
    "no-store",
    "only-if-cached",
    "max-age=0",
    "max-age=abc",
    "max-age=1e30",
    "s-maxage=5",
    "max-age=-1",
    "max-age=",
    'max-age="5"',
    "private, no-cache",
    "no-cache=foo",
    "max-stale",
    ",,,",
    "ONLY-IF-CACHED",
    "max-age=5, only-if-cached",
    "s-maxage=315360001",
    "max-age=nan",
    "max-age=inf",
    "max-age=1e400",
    "max-age=60",
    "no-cache, no-store, only-if-cached",
    "max-stale=30",
    "max-stale=0",
    "max-stale=-1",
    "max-stale=nan",
    "max-stale=1e400",
    "max-stale=99999999999999999999",
    'max-stale="5"',
    "max-stale=5, max-stale=10",
    "max-stale=\u0663",
    "stale-if-error",
    "stale-if-error=60",
    "stale-if-error=-0",
    "stale-if-error=inf",
    "stale-if-error=315360001",
    "only-if-cached, max-stale",
    "only-if-cached, max-stale=60",
    "max-stale=60, stale-if-error=60, max-age=0",
)
# Values for the tags and stale-window controls, good and bad.
TAG_VALUES = (
    "a",
    "doc:42,team-search",
    "a,a,a",
    "",
    " , ",
    "x" * 64,
    "x" * 65,
    "ü",
    ",".join(f"t{i}" for i in range(16)),
    ",".join(f"t{i}" for i in range(17)),
    "a b",
    "tag;x",
    "-",
    ":::",
    "a,,b",
    "_tags/a",
    "x" * 5000,
)
BODY_TAG_VALUES: tuple[Any, ...] = (
    ["a"],
    ["doc:42", "team-search"],
    [],
    ["a", "a"],
    [""],
    [1],
    [None],
    "a,b",
    "a",
    {"a": 1},
    [["a"]],
    ["x" * 65],
    [f"t{i}" for i in range(17)],
    ["ü"],
    [True],
)
STALE_VALUES = (
    "0",
    "30",
    "600",
    "-1",
    "-0",
    "1e400",
    "nan",
    "NaN",
    "inf",
    "",
    "315360001",
    "315360000",
    "99999999999999999999",
    "1.5",
    "\u0663",
    "abc",
    "30,30",
    "0x10",
    "1_0",
)
BODY_STALE_VALUES: tuple[Any, ...] = (
    0,
    30,
    600,
    -1,
    1.5,
    True,
    None,
    "30",
    [],
    {},
    Raw("1e400"),
    Raw("-0"),
    Raw("99999999999999999999"),
    Raw("315360001"),
    "nan",
)
TEAMS = (b"ml", b"ml", b"ML", b"other", b"", b"ml,ml", b"\xe9")
TRACEPARENTS = (
    b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
    b"00-xyz",
    b"",
    b"garbage",
    b"\xff\xfe",
    b"00-" + b"a" * 5000,
)
TRACESTATES = (b"congo=t61rcWkgMzE", b"a=b,c=d", b"", b"=", b"x" * 8000, b"\xe9=\xe9", b"a=" + b",a=b" * 300)
CREDENTIAL_NAMES = (b"authorization", b"api-key", b"x-api-key", b"openai-organization", b"openai-project")
KEYS = (
    b"Bearer sk-fuzz-a",
    b"Bearer sk-fuzz-b",
    b"sk-fuzz-c",
    b"Bearer ",
    b"Bearer sk-\xe9\xff",
    b"Basic Zm9vOmJhcg==",
)
# The proxy's configuration under fuzzing: tenant policies (by header, by model glob, by
# credential) and stale windows, so their controls and matching are fuzzed too.
FUZZ_POLICIES: list[dict[str, Any]] = [
    {
        "name": "team-ml",
        "match": {"header": {"x-team": "ml"}},
        "namespace": "ml",
        "ttl_s": 1,
        "stale_while_revalidate_s": 30,
        "stale_if_error_s": 60,
        "allow_controls": ["ttl", "namespace", "max-stale", "stale-if-error", "tags", "only-if-cached"],
    },
    {
        "name": "mini-models",
        "match": {"model": "gpt-4o-mini*"},
        "namespace": "mini",
        "max_ttl_s": 60,
        "deny_controls": ["no-store", "similarity-threshold"],
    },
    {
        "name": "key-b",
        "match": {"credential_sha256": [hashlib.sha256(b"sk-fuzz-b").hexdigest()]},
        "namespace": "keyb",
        "stale_if_error_s": 5,
        "stale_while_revalidate_s": 2,
        "deny_controls": ["no-cache"],
    },
]
FUZZ_CACHE: dict[str, Any] = {"stale": {"while_revalidate_s": 20, "if_error_s": 60}}
JSON_TYPES = (
    b"application/json",
    b"application/json; charset=utf-8",
    b"text/plain",
    b"multipart/form-data; boundary=x",
    b"application/x-www-form-urlencoded",
    b"\xff\xfe",
    b"",
    b"APPLICATION/JSON",
)
BROKEN_JSON = (
    b"[]",
    b'"x"',
    b"1",
    b"null",
    b"",
    b" ",
    b"{",
    b'{"model":',
    b"{'model': 'x'}",
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": 01}',
    b'{"a": 1.}',
    b'{"a": .5}',
    b'{"a": -}',
    b'{"a": 1,}',
    b"/* c */ {}",
    b"\xef\xbb\xbf{}",
    b'{"a": "\xff"}',
    b'{"a": "\\ud800"}',
    b'{"a": "\\x41"}',
    b"{}\x00",
    b"{} {}",
    b'{"model": "gpt-4o"}garbage',
)
FEATURES = ("query", "no-prefix", "repeat", "burst", "multipart", "admin", "upstream-failure")
BCHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? "


class Generator:
    """Seeded request generator. `small` keeps bodies small (for the in-suite run)."""

    def __init__(
        self,
        seed: int,
        small: bool = False,
        max_body: int = 1 << 20,
        without: frozenset[str] = frozenset(),
        admin_token: str = ADMIN_TOKEN,
    ) -> None:
        self.rng = random.Random(seed)
        self.admin_token = admin_token
        self.small = small
        self.max_body = max_body
        self.without = without  # FEATURES not to generate, e.g. to get past a known finding
        self.sent_ok: list[FuzzRequest] = []  # 2xx requests, for repeats
        self.answers: dict[str, list[tuple[bytes, bytes]]] = {}  # route: 2xx answers, to seed with
        self.tagged: dict[str, list[FuzzRequest]] = {}  # tag: requests whose miss wrote entries with it
        self.audio = [self.rng.randbytes(self.rng.randint(0, 3000)) for _ in range(4)] + [b"", b"RIFF"]

    # ---- entry

    def request(self) -> FuzzRequest:
        rng = self.rng
        if self.sent_ok and rng.random() < 0.25 and "repeat" not in self.without:
            return self.repeat(rng.choice(self.sent_ok[-64:]))
        if rng.random() < 0.12 and "admin" not in self.without:
            return self.admin_request()
        route = rng.choice(ROUTES)
        if route == "/v1/audio/transcriptions" and "multipart" not in self.without:
            request = self.multipart(route)
        elif route == "/v1/audio/transcriptions":
            request = self.json_request(ROUTES[0])
        else:
            request = self.json_request(route)
        if rng.random() < 0.3 and "no-prefix" not in self.without:
            request.path = request.path[3:]  # the same route without /v1
        if rng.random() < 0.08 and "query" not in self.without:
            request.path += "?" + rng.choice(("api-version=2024-06-01", "a=1&a=2", "x=%ff", "", "q=" + "z" * 500))
        return request

    def remember(self, request: FuzzRequest, status: int, headers: Headers | None = None, body: bytes = b"") -> None:
        if 200 <= status < 300 and not request.admin:
            self.sent_ok.append(request)
            del self.sent_ok[:-256]
            answers = self.answers.setdefault(request.route, [])
            answers.append((body, _header(headers or [], b"content-type") or b""))
            del answers[:-16]
            found = ANSWER_ID.search(body)
            if _header(headers or [], b"x-cache-status") == b"miss" and found is not None:
                request.answer_id = found.group(1)
                for tag in tags_written(request):
                    self.tagged.setdefault(tag, []).append(request)
                    del self.tagged[tag][:-8]

    def repeat(self, earlier: FuzzRequest) -> FuzzRequest:
        """The same request again (a hit), possibly with stream flipped or other headers."""
        rng = self.rng
        headers = list(earlier.headers)
        body = earlier.body
        note = "repeat"
        template = earlier.template
        if isinstance(template, dict) and rng.random() < 0.5:
            template = dict(template)
            choice = rng.choice(("stream", "usage", "no-stream", "cache-control"))
            if choice == "stream":
                template["stream"] = True
            elif choice == "usage":
                template["stream"], template["stream_options"] = True, {"include_usage": True}
            elif choice == "no-stream":
                template.pop("stream", None)
                template.pop("stream_options", None)
            else:
                headers.append((b"cache-control", rng.choice((b"only-if-cached", b"no-cache", b"max-age=0"))))
            body = encode_text(to_json(template, rng, fancy=True))
            note = f"repeat ({choice})"
        elif rng.random() < 0.3:
            headers = self.random_headers(headers)
            note = "repeat (headers changed)"
        elif rng.random() < 0.2 and "upstream-failure" not in self.without:
            # The upstream fails this time: a stale answer (111) or the failure, passed on.
            headers.append((b"x-fake-status", rng.choice((b"500", b"502", b"503", b"429"))))
            if rng.random() < 0.8:
                headers.append(
                    rng.choice(
                        (
                            (b"x-cache-stale-if-error", rng.choice((b"600", b"1", b"0"))),
                            (b"cache-control", b"stale-if-error=600"),
                            (b"cache-control", b"max-stale=600"),
                            (b"x-cache-max-stale", b"600"),
                        )
                    )
                )
            note = "repeat (upstream fails)"
        return FuzzRequest(earlier.path, headers, body, note, template)

    def burst(self) -> list[FuzzRequest]:
        """Identical requests to send at once (coalescing), some streamed, some not."""
        rng = self.rng
        route = rng.choice(ROUTES[:3])
        base = self.json_request(route, mutate=False)
        template = base.template
        copies = []
        for _ in range(rng.randint(2, 6)):
            variant = dict(template)
            mode = rng.choice(("same", "stream", "usage", "plain"))
            if mode == "stream":
                variant["stream"] = True
                variant.pop("stream_options", None)
            elif mode == "usage":
                variant["stream"], variant["stream_options"] = True, {"include_usage": True}
            elif mode == "plain":
                variant.pop("stream", None)
                variant.pop("stream_options", None)
            body = encode_text(to_json(variant, rng))
            copies.append(FuzzRequest(base.path, list(base.headers), body, f"burst ({mode})", variant))
        return copies

    # ---- admin documents

    def admin_request(self) -> FuzzRequest:
        """PUT /cache/entries, POST /cache/explain or POST /cache/invalidate with a JSON
        document: well formed, or mutated (wrong types, unknown fields, junk)."""
        rng = self.rng
        path = rng.choice(ADMIN_ROUTES)
        notes = [path.rsplit("/", 1)[-1]]
        document: Any
        if path == "/cache/invalidate":
            tags: Any = [t for t in rng.choice(TAG_VALUES).split(",")] if rng.random() < 0.7 else None
            if tags is None:
                tags = rng.choice(BODY_TAG_VALUES + ([f"t{i}" for i in range(1001)], ["a"] * 1000, "a"))
            if self.tagged and rng.random() < 0.4:
                tags = [rng.choice(sorted(self.tagged))]  # a tag of entries written: replayed after
            document = {"tags": tags}
        else:
            route, described, notes_of = self.described_request()
            notes += notes_of
            document = {"request": described}
            if path == "/cache/entries":
                document["response"] = self.described_response(route)
                if rng.random() < 0.4:
                    document["ttl_s"] = rng.choice(BODY_CONTROL_VALUES + BODY_STALE_VALUES)
        if rng.random() < 0.4:
            document = self.jumble(document)
            notes.append("jumbled")
        raw = encode_text(to_json(document, rng, fancy=rng.random() < 0.3))
        if rng.random() < 0.05:
            raw = self.break_json(raw)
            notes.append("broken-json")
        headers: Headers = [(b"content-type", b"application/json")]
        roll = rng.random()
        if roll < 0.93:
            headers.append((b"authorization", b"Bearer " + self.admin_token.encode()))
        elif roll < 0.97:
            headers.append((b"authorization", rng.choice(KEYS)))
            notes.append("wrong-token")
        else:
            notes.append("no-token")
        method = "PUT" if path == "/cache/entries" else "POST"
        if rng.random() < 0.03:
            method = rng.choice(("GET", "DELETE", "PATCH", "POST", "PUT"))
            notes.append(f"method {method}")
        replay = None
        if path == "/cache/entries" and not set(notes) & {"jumbled", "broken-json"}:
            replay = self.replay_of(document["request"])
        return FuzzRequest(path, headers, raw, ", ".join(notes), template=replay, method=method)

    def replay_of(self, described: dict[str, Any]) -> FuzzRequest | None:
        """The request a seeding document describes, sent with only-if-cached: once the
        seed is stored it must be a hit of the seeded key. None when the request carries
        controls or tags that could make it miss (another writer, an invalidation)."""
        sent = described.get("headers", {})
        if len(sent) > 80:
            return None  # with the client's own headers, past what the proxy takes (431)
        if any(name.lower().startswith(("x-cache-", "cache-control")) for name in sent):
            return None
        headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in sent.items()]
        if "body" in described:
            body = encode_text(to_json(described["body"], self.rng))
            if not any(n.lower() == b"content-type" for n, _ in headers):
                headers.append((b"content-type", b"application/json"))
        else:
            try:
                body = base64.b64decode(described["body_base64"], validate=True)
            except (ValueError, TypeError):
                return None
        headers.append((b"cache-control", b"only-if-cached"))
        return FuzzRequest(described["path"], headers, body, "replay of a seed")

    def described_request(self) -> tuple[str, Any, list[str]]:
        """(route, the `request` member of an admin document, notes): a request for any
        cached route, or junk."""
        rng = self.rng
        route = rng.choice(CACHED_ROUTES)
        notes = [route]
        described: dict[str, Any] = {}
        path = route if rng.random() < 0.7 else route[3:]
        if rng.random() < 0.1:
            path = rng.choice(
                (
                    "",
                    "x",
                    "/v1/models",
                    "/cache/explain",
                    route + "/",
                    route + "/../x",
                    "http://h" + route,
                    route + "\xe9",
                )
            )
            notes.append("odd-path")
        if rng.random() < 0.08:
            path += "?" + rng.choice(("api-version=2024-06-01", "a=1&a=2", "", "x=%ff"))
        described["path"] = path
        body: Any
        content_type = b"application/json"
        if route in ("/v1/audio/transcriptions", "/v1/audio/translations", "/v1/images/edits", "/v1/images/variations"):
            form = self.multipart("/v1/audio/transcriptions")
            body, content_type = form.body, _header(form.headers, b"content-type") or b""
            encoded = True
        else:
            body = self.api_body(route)
            encoded = rng.random() < 0.25
        if encoded:
            raw = body if isinstance(body, bytes) else encode_text(to_json(body, rng))
            text = base64.b64encode(raw).decode()
            if rng.random() < 0.1:
                text = rng.choice((text[:-1], text + "!", "%%%", text.replace("=", ""), "", "\xe9", text + "\n"))
                notes.append("bad-base64")
            described["body_base64"] = text
        else:
            described["body"] = body
        if rng.random() < 0.05:
            described["body_base64" if "body" in described else "body"] = {}
            notes.append("both-bodies")
        headers = self.random_headers(self.base_headers(content_type if encoded else None))
        if route in ANTHROPIC_ROUTES and rng.random() < 0.8:
            headers.append((b"anthropic-version", b"2023-06-01"))
        if rng.random() < 0.9:
            described["headers"] = {n.decode("latin-1"): v.decode("latin-1") for n, v in headers}
        return route, described, notes

    def api_body(self, route: str) -> dict[str, Any]:
        """A plausible JSON body for a cached route."""
        rng = self.rng
        if route == "/v1/chat/completions":
            return self.chat_body()
        if route == "/v1/completions":
            return self.completion_body()
        if route == "/v1/embeddings":
            return self.embeddings_body()
        if route == "/v1/messages":
            return self.messages_body()
        if route == "/v1/responses":
            return self.responses_body()
        if route == "/v1/images/generations":
            return {"model": "dall-e-3", "prompt": self.text(), "n": rng.randint(1, 2)}
        if route == "/v1/audio/speech":
            return {"model": "tts-1", "input": self.text(), "voice": "alloy"}
        if route == "/v1/rerank":
            return {"model": "rerank-1", "query": self.text(), "documents": [self.text(), self.text()]}
        return {"model": "omni-moderation-latest", "input": self.text()}

    def described_response(self, route: str) -> Any:
        """The `response` member of a seeding document: an answer this route gave, or junk."""
        rng = self.rng
        answers = self.answers.get(route)
        if not answers or rng.random() < 0.15:
            body: bytes = rng.choice(
                (b"{}", b'{"error": {"message": "x"}}', b"<html></html>", b"data: [DONE]\n\n", b"", b"\xff\xfe")
            )
            content_type = rng.choice((b"application/json", b"text/event-stream", b"text/html", b""))
        else:
            body, content_type = rng.choice(answers)
        response: dict[str, Any] = {}
        parsed = None
        if content_type.startswith(b"application/json"):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        if isinstance(parsed, dict) and rng.random() < 0.6:
            response["body"] = parsed
        else:
            response["body_base64"] = base64.b64encode(body).decode()
        if rng.random() < 0.6:
            response["content_type"] = content_type.decode("latin-1")
        if rng.random() < 0.05:
            response["content_type"] = rng.choice(("", "x" * 5000, "\xe9", "text/event-stream; charset=utf-8"))
        return response

    def jumble(self, value: Any, depth: int = 0) -> Any:
        """`value` with random members replaced, removed or added (JSON structure junk)."""
        rng = self.rng
        if depth == 0 and rng.random() < 0.05:
            return rng.choice(([], "x", 1, None, [value], self.nested(rng.choice((100, 3000)))))
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for name, item in value.items():
                roll = rng.random()
                if roll < 0.08:
                    continue
                if roll < 0.2:
                    out[name] = self.random_value()
                elif roll < 0.23:
                    out[name] = "z" * 100_000 if not self.small else "z" * 5000
                else:
                    out[name] = self.jumble(item, depth + 1)
            if rng.random() < 0.1:
                out[rng.choice(("extra", "Request", "body ", "ttl", "__proto__", self.text()[:20]))] = (
                    self.random_value()
                )
            if rng.random() < 0.05:
                return Dupes(out, [(rng.choice(sorted(out) or ["x"]), self.random_value())])
            return out
        if isinstance(value, list) and value and rng.random() < 0.2:
            return [self.jumble(item, depth + 1) for item in value] + [self.random_value()]
        return value

    # ---- headers

    def base_headers(self, content_type: bytes | None) -> Headers:
        rng = self.rng
        headers: Headers = []
        if content_type is not None:
            headers.append((b"content-type", content_type))
        if rng.random() < 0.85:
            headers.append((b"authorization", rng.choice(KEYS[:2]) if rng.random() < 0.8 else rng.choice(KEYS)))
        return headers

    def random_headers(self, headers: Headers) -> Headers:
        rng = self.rng
        headers = list(headers)
        if rng.random() < 0.4:
            headers = self.feature_headers(headers)
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3, 5))):
            kind = rng.random()
            if kind < 0.35:
                name = rng.choice(CONTROL_NAMES + ("foo", "only-if-cached", "TTL", "max-age", ""))
                headers.append((b"x-cache-" + name.encode(), rng.choice(HEADER_CONTROL_VALUES).encode("latin-1")))
            elif kind < 0.5:
                headers.append((b"cache-control", rng.choice(CACHE_CONTROL).encode()))
            elif kind < 0.7:
                name = rng.choice(CREDENTIAL_NAMES)
                headers.append((name, rng.choice(KEYS)))
                if rng.random() < 0.3:  # a credential header twice
                    headers.append((name, rng.choice(KEYS)))
            elif kind < 0.8:
                headers = [(n, v) for n, v in headers if n != b"content-type"]
                if rng.random() < 0.8:
                    headers.append((b"content-type", rng.choice(JSON_TYPES)))
            elif kind < 0.9:
                headers.append((b"accept-encoding", rng.choice((b"gzip", b"br", b"identity", b"*", b"gzip;q=0"))))
            else:
                headers.append((self.header_name(), self.header_value()))
        if rng.random() < 0.01:  # more header lines than the proxy takes
            headers.extend((b"x-many-%d" % i, b"v") for i in range(150))
        if rng.random() < 0.01 and not self.small:  # a head larger than the proxy takes
            headers.append((b"x-big", b"v" * 70_000))
        return headers

    def feature_headers(self, headers: Headers) -> Headers:
        """Headers of the newer features: tags and stale-window controls, the header a tenant
        policy matches by, W3C trace context; good and bad values, some sent twice."""
        rng = self.rng
        kind = rng.random()
        if kind < 0.2:
            added = [(b"x-cache-tags", rng.choice(TAG_VALUES).encode())]
        elif kind < 0.4:
            name = rng.choice((b"x-cache-max-stale", b"x-cache-stale-if-error"))
            added = [(name, rng.choice(STALE_VALUES).encode())]
        elif kind < 0.7:
            added = [(b"x-team", rng.choice(TEAMS))]
        elif kind < 0.9:
            added = [(b"traceparent", rng.choice(TRACEPARENTS))]
            if rng.random() < 0.5:
                added.append((b"tracestate", rng.choice(TRACESTATES)))
        else:
            added = [(b"authorization" if rng.random() < 0.5 else b"x-api-key", b"sk-fuzz-b")]
            headers = [(n, v) for n, v in headers if n not in CREDENTIAL_NAMES]
        if rng.random() < 0.1:  # the same header twice
            added.append((added[0][0], rng.choice((added[0][1], b"ml", b"30", b"a"))))
        return headers + added

    def header_name(self) -> bytes:
        rng = self.rng
        name = "x-" + "".join(
            rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-_.!#$%&'*+^`|~") for _ in range(rng.randint(1, 12))
        )
        if name.startswith("x-fake-"):
            name = "x-not" + name[1:]
        return rng.choice(
            (name, "anthropic-version", "anthropic-beta", "x-request-id", "user-agent", "openai-beta")
        ).encode()

    def header_value(self) -> bytes:
        rng = self.rng
        allowed = [b for b in range(0x20, 0x7F)] + list(range(0x80, 0x100))
        value = bytes(rng.choice(allowed) for _ in range(rng.randint(0, 40)))
        return value.strip() or b"v"

    # ---- JSON bodies

    def text(self) -> str:
        rng = self.rng
        if rng.random() < 0.1:
            return rng.choice(WEIRD_STRINGS)
        return rng.choice(PHRASES)

    def messages(self) -> list[Any]:
        rng = self.rng
        out: list[Any] = []
        if rng.random() < 0.3:
            out.append({"role": "system", "content": "You are terse."})
        for _ in range(rng.randint(1, 3)):
            content: Any = self.text()
            if rng.random() < 0.15:
                content = [{"type": "text", "text": self.text()}]
            out.append({"role": "user", "content": content})
        if rng.random() < 0.1:
            out.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "pick", "arguments": "{}"}}
                    ],
                }
            )
            out.append({"role": "tool", "tool_call_id": "call_1", "content": "42"})
        return out

    def tools(self) -> list[Any]:
        maximum: Any = self.rng.choice((10, Raw("18446744073709552233"), Raw("18446744073709552234"), Raw("1e400")))
        return [
            {
                "type": "function",
                "function": {
                    "name": "pick",
                    "description": "pick a number",
                    "parameters": {
                        "type": "object",
                        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": maximum}},
                        "required": ["n"],
                    },
                },
            }
        ]

    def chat_body(self) -> dict[str, Any]:
        rng = self.rng
        body: dict[str, Any] = {"model": rng.choice(MODELS[:3]), "messages": self.messages()}
        optional: dict[str, Callable[[], Any]] = {
            "temperature": lambda: rng.choice((0, 0.2, 1, 1.0, 2)),
            "top_p": lambda: rng.choice((0.5, 1)),
            "max_tokens": lambda: rng.randint(1, 40),
            "max_completion_tokens": lambda: rng.randint(1, 40),
            "n": lambda: rng.randint(1, 3),
            "seed": lambda: rng.randint(0, 10),
            "stop": lambda: rng.choice(("\n", ["a", "b"])),
            "user": lambda: "user-" + str(rng.randint(0, 3)),
            "logprobs": lambda: rng.choice((True, False)),
            "top_logprobs": lambda: rng.randint(0, 3),
            "tools": self.tools,
            "tool_choice": lambda: rng.choice(("auto", "none", {"type": "function", "function": {"name": "pick"}})),
            "response_format": lambda: {"type": rng.choice(("json_object", "text"))},
            "metadata": lambda: {"k": self.text()},
        }
        for name in rng.sample(sorted(optional), rng.randint(0, 4)):
            body[name] = optional[name]()
        return body

    def completion_body(self) -> dict[str, Any]:
        rng = self.rng
        prompt = rng.choice(
            (
                lambda: self.text(),
                lambda: [self.text(), self.text()],
                lambda: [rng.randint(0, 50000) for _ in range(3)],
                lambda: [[1, 2, 3], [4, 5]],
            )
        )()
        body: dict[str, Any] = {"model": rng.choice(("gpt-3.5-turbo-instruct", "gpt-4o-mini")), "prompt": prompt}
        for name, make in (
            ("max_tokens", lambda: rng.randint(1, 30)),
            ("echo", lambda: rng.choice((True, False))),
            ("logprobs", lambda: rng.randint(0, 5)),
            ("n", lambda: rng.randint(1, 2)),
            ("suffix", lambda: "!"),
            ("temperature", lambda: rng.choice((0, 0.7))),
        ):
            if rng.random() < 0.25:
                body[name] = make()
        return body

    def embeddings_body(self) -> dict[str, Any]:
        rng = self.rng
        vocabulary = [p for p in PHRASES if p] + ["alpha", "beta", "gamma", "delta"]
        shape = rng.random()
        if shape < 0.35:
            value: Any = rng.choice(vocabulary)
        elif shape < 0.8:
            value = [rng.choice(vocabulary) for _ in range(rng.randint(1, 6))]
        elif shape < 0.9:
            value = [rng.randint(0, 100) for _ in range(rng.randint(1, 5))]
        else:
            value = [[rng.randint(0, 100) for _ in range(rng.randint(1, 3))] for _ in range(rng.randint(1, 3))]
        body: dict[str, Any] = {"model": "text-embedding-3-small", "input": value}
        if rng.random() < 0.2:
            body["dimensions"] = rng.choice((4, 8, 16))
        if rng.random() < 0.2:
            body["encoding_format"] = rng.choice(("float", "base64"))
        return body

    def messages_body(self) -> dict[str, Any]:
        """Anthropic's Messages API."""
        rng = self.rng
        turns = [m for m in self.messages() if m.get("role") == "user"]
        body: dict[str, Any] = {
            "model": rng.choice(("claude-3-5-haiku-latest", "claude-sonnet-4-0", "gpt-4o-mini")),
            "max_tokens": rng.randint(1, 64),
            "messages": turns,
        }
        if rng.random() < 0.3:
            body["system"] = self.text()
        if rng.random() < 0.2:
            body["temperature"] = rng.choice((0, 0.5, 1))
        return body

    def responses_body(self) -> dict[str, Any]:
        """OpenAI's Responses API."""
        rng = self.rng
        body: dict[str, Any] = {
            "model": rng.choice(MODELS[:3]),
            "input": self.text() if rng.random() < 0.6 else self.messages(),
        }
        if rng.random() < 0.2:
            body["instructions"] = self.text()
        if rng.random() < 0.05:
            body["background"] = True
        if rng.random() < 0.05:
            body["previous_response_id"] = "resp_" + self.text()[:10]
        return body

    def random_value(self, depth: int = 0) -> Any:
        rng = self.rng
        kind = rng.random()
        if depth > 3 or kind < 0.5:
            return rng.choice(
                (
                    None,
                    True,
                    False,
                    0,
                    -1,
                    1.5,
                    Raw(rng.choice(HUGE_NUMBERS)),
                    self.text(),
                    rng.choice(WEIRD_STRINGS),
                )
            )
        if kind < 0.75:
            return [self.random_value(depth + 1) for _ in range(rng.randint(0, 3))]
        return {self.text()[:20]: self.random_value(depth + 1) for _ in range(rng.randint(0, 3))}

    def cache_object(self) -> Any:
        rng = self.rng
        if rng.random() < 0.1:
            return self.random_value()
        names = CONTROL_NAMES + ("foo", "only-if-cached", "TTL", "")
        control = {}
        for _ in range(rng.randint(0, 3)):
            name = rng.choice(names)
            if name == "tags" and rng.random() < 0.8:
                control[name] = rng.choice(BODY_TAG_VALUES)
            elif name in ("max-stale", "stale-if-error") and rng.random() < 0.8:
                control[name] = rng.choice(BODY_STALE_VALUES)
            else:
                control[name] = rng.choice(BODY_CONTROL_VALUES)
        return control

    def nested(self, depth: int) -> Raw:
        """`depth` arrays or objects one inside the other (as text: no recursion here)."""
        leaf = self.rng.choice(("1.0", "1", '"x"', "1e400", "null", "18446744073709552233"))
        if self.rng.random() < 0.5:
            return Raw("[" * depth + leaf + "]" * depth)
        return Raw('{"a":' * depth + leaf + "}" * depth)

    def mutate(self, body: dict[str, Any]) -> tuple[Any, list[str]]:
        """0-3 changes that an OpenAI client would not make."""
        rng = self.rng
        notes = []
        document: Any = body
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            how = rng.choice(
                (
                    "wrong-type",
                    "huge-number",
                    "deep-nesting",
                    "unicode",
                    "drop-field",
                    "null-field",
                    "cache",
                    "stream",
                    "stream-options",
                    "duplicate-key",
                    "extra-param",
                    "model",
                    "cache",
                    "stream",
                )
            )
            notes.append(how)
            if not isinstance(document, dict):
                break
            if how == "wrong-type" and document:
                document[rng.choice(sorted(document))] = self.random_value()
            elif how == "huge-number":
                name = rng.choice(("temperature", "max_tokens", "n", "seed", "top_p", "dimensions", "logprobs", "x"))
                document[name] = Raw(rng.choice(HUGE_NUMBERS))
            elif how == "deep-nesting":
                depth = rng.choice((50, 200, 900, 1023, 1024, 1025, 1100, 3000))
                document[rng.choice(("metadata", "messages", "input", "x"))] = self.nested(depth)
                notes[-1] += f"({depth})"
            elif how == "unicode":
                document[rng.choice(("model", "user", "prompt", "input", "x"))] = rng.choice(WEIRD_STRINGS)
            elif how == "drop-field" and document:
                del document[rng.choice(sorted(document))]
            elif how == "null-field":
                document[rng.choice(("model", "messages", "prompt", "input"))] = None
            elif how == "cache":
                document["cache"] = self.cache_object()
            elif how == "stream":
                document["stream"] = rng.choice(
                    (True, False, None, "true", 1, 0, [], {}, "yes", Raw("1.0"), 1.5, "false")
                )
            elif how == "stream-options":
                document["stream_options"] = rng.choice(
                    ({"include_usage": True}, {"include_usage": "yes"}, None, [], "x", {})
                )
            elif how == "duplicate-key":
                name = rng.choice(("model", "stream", "cache", "messages"))
                document = Dupes(document, [(name, self.random_value())])
            elif how == "extra-param":
                document[self.text()[:30] or "k"] = self.random_value()
            elif how == "model":
                document["model"] = rng.choice((self.random_value(), "gpt-*", "m" * 10_000, "", "GPT-4O", " gpt-4o"))
        return document, notes

    def json_request(self, route: str, mutate: bool = True) -> FuzzRequest:
        rng = self.rng
        make = {
            "/v1/chat/completions": self.chat_body,
            "/v1/completions": self.completion_body,
            "/v1/embeddings": self.embeddings_body,
            "/v1/messages": self.messages_body,
            "/v1/responses": self.responses_body,
        }[route]
        body = make()
        notes = [CALL_TYPE_OF[route]]
        if route != "/v1/embeddings" and rng.random() < 0.35:
            body["stream"] = True
            if route in ("/v1/chat/completions", "/v1/completions") and rng.random() < 0.5:
                body["stream_options"] = {"include_usage": rng.random() < 0.7}
        if rng.random() < 0.15:
            body["cache"] = self.cache_object()
            notes.append("cache")
        template: Any = body
        if mutate and rng.random() < 0.55:
            body, more = self.mutate(dict(body))
            notes += more
            template = None
        raw = encode_text(to_json(body, rng, fancy=rng.random() < 0.5))
        if mutate and rng.random() < 0.06:
            raw = self.break_json(raw)
            notes.append("broken-json")
            template = None
        if mutate and rng.random() < 0.02:
            size = 40_000 if self.small else self.max_body + 1000
            raw = raw[:-1] + b', "padding": "' + b"p" * size + b'"}'
            notes.append(f"big-body({size})")
            template = None
        headers = self.base_headers(b"application/json")
        if route in ANTHROPIC_ROUTES and rng.random() < 0.9:
            headers.append((b"anthropic-version", b"2023-06-01"))
            if rng.random() < 0.5:
                headers = [
                    (b"x-api-key", v.removeprefix(b"Bearer ")) if n == b"authorization" else (n, v) for n, v in headers
                ]
        if mutate:
            headers = self.random_headers(headers)
        return FuzzRequest(route, headers, raw, ", ".join(notes), template)

    def break_json(self, raw: bytes) -> bytes:
        rng = self.rng
        how = rng.random()
        if how < 0.5:
            return rng.choice(BROKEN_JSON)
        if how < 0.7:
            return raw[: rng.randint(0, len(raw))]
        if how < 0.85:
            position = rng.randint(0, len(raw))
            return raw[:position] + rng.choice((b"\xff", b"\xc3", b"\x00", b"}", b'"', b"\\")) + raw[position:]
        return raw + rng.choice((b" ", b"\n", b"x", b"}", b"{}"))

    # ---- multipart bodies

    def multipart(self, route: str) -> FuzzRequest:
        rng = self.rng
        notes = ["transcriptions"]
        parts: list[tuple[list[bytes], bytes]] = []

        def disposition(name: bytes | None, filename: bytes | None = None) -> bytes:
            line = b"Content-Disposition: form-data"
            if name is not None:
                line += b'; name="' + name + b'"'
            if filename is not None:
                line += b'; filename="' + filename + b'"'
            return line

        def field(name: bytes, value: bytes, ctype: bytes | None = None) -> None:
            head = [disposition(name)]
            if ctype is not None:
                head.append(b"Content-Type: " + ctype)
            parts.append((head, value))

        if rng.random() < 0.92:
            filename = rng.choice(
                (
                    b"clip.wav",
                    b"",
                    b'a\\"b.wav',
                    b"C:\\clips\\a.wav",
                    "é.mp3".encode(),
                    b"x" * 300,
                    b"\xff\xfe.wav",
                    b"a;b.wav",
                    b"clip.wav",
                    b"clip.mp3",
                )
            )
            ctype = rng.choice((b"audio/wav", b"application/octet-stream", None, b"text/plain", b"\xff"))
            head = [disposition(b"file", filename)]
            if ctype is not None:
                head.append(b"Content-Type: " + ctype)
            data = rng.choice(self.audio) if rng.random() < 0.8 else rng.randbytes(rng.randint(0, 5000))
            parts.append((head, data))
        if rng.random() < 0.9:
            field(b"model", rng.choice((b"whisper-1", b"whisper-1", b"", b"\xff", "modèle".encode(), b"gpt-*")))
        if rng.random() < 0.4:
            field(b"response_format", rng.choice((b"json", b"text", b"srt", b"vtt", b"verbose_json", b"xml", b"")))
        if rng.random() < 0.3:
            field(b"language", rng.choice((b"en", b"fr", b"\xff", b"", "日本".encode())))
        if rng.random() < 0.2:
            field(b"temperature", rng.choice((b"0", b"0.5", b"abc", b"1e400", b"", b"-1")))
        if rng.random() < 0.2:
            for value in rng.sample((b"word", b"segment", b"char"), rng.randint(1, 3)):
                field(b"timestamp_granularities[]", value)
        if rng.random() < 0.15:
            field(b"prompt", encode_text(self.text()))
        if rng.random() < 0.12:
            field(b"stream", rng.choice((b"true", b"false", b"TRUE", b"1", b"yes", b"")))
            notes.append("stream")
        if rng.random() < 0.15:
            control = self.cache_object()
            value = encode_text(to_json(control, rng)) if rng.random() < 0.85 else rng.choice((b"{nope", b"", b"\xff"))
            field(b"cache", value)
            notes.append("cache")
        if rng.random() < 0.15:
            for _ in range(rng.randint(1, 3)):
                name = rng.choice((b"x", b"", b"\xff\xfe", "名前".encode(), b'q"uote', b"file", b"model", b"a" * 500))
                field(name, rng.randbytes(rng.randint(0, 40)), rng.choice((None, b"text/plain", b"application/json")))
            notes.append("extra-parts")
        if rng.random() < 0.03:
            parts.extend(([disposition(b"p%d" % i)], b"") for i in range(300))
            notes.append("300-parts")
        if rng.random() < 0.05:
            parts.append(([b"X-Other: 1"], b"no disposition"))
            notes.append("no-disposition")
        if rng.random() < 0.03:
            parts.append(([disposition(None)], b"no name"))
            notes.append("no-name")
        rng.shuffle(parts)

        boundary = self.boundary(parts)
        body = self.encode_parts(parts, boundary, notes)
        content_type = b"multipart/form-data; boundary=" + (
            boundary
            if re.fullmatch(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+", boundary) and rng.random() < 0.8
            else b'"' + boundary + b'"'
        )
        roll = rng.random()
        if roll < 0.03:
            content_type = b"multipart/form-data"
            notes.append("no-boundary")
        elif roll < 0.06:
            content_type = rng.choice((b"application/json", b"text/plain", b"multipart/mixed; boundary=" + boundary))
            notes.append("wrong-type")
        elif roll < 0.09:
            content_type = b"multipart/form-data; boundary=other" + boundary
            notes.append("boundary-mismatch")
        elif roll < 0.1:
            content_type = b"multipart/form-data; boundary="
            notes.append("empty-boundary")
        if rng.random() < 0.02:
            body = rng.randbytes(rng.randint(0, 2000))
            notes.append("random-bytes")
        if rng.random() < 0.01:
            body += b"\r\n" + b"z" * (40_000 if self.small else self.max_body)
            notes.append("big-body")
        headers = self.random_headers(self.base_headers(content_type))
        return FuzzRequest(route, headers, body, ", ".join(notes))

    def boundary(self, parts: list[tuple[list[bytes], bytes]]) -> bytes:
        rng = self.rng
        while True:
            if rng.random() < 0.5:
                text = "----fuzz" + "".join(rng.choice("0123456789abcdef") for _ in range(16))
            else:
                text = "".join(rng.choice(BCHARS) for _ in range(rng.randint(1, 70))).rstrip(" ") or "b"
            boundary = text.encode()
            delimiter = b"--" + boundary
            if not any(delimiter in data or any(delimiter in line for line in head) for head, data in parts):
                return boundary

    def encode_parts(self, parts: list[tuple[list[bytes], bytes]], boundary: bytes, notes: list[str]) -> bytes:
        rng = self.rng
        newline = b"\r\n"
        if rng.random() < 0.03:
            newline = b"\n"
            notes.append("lf-only")
        chunks = []
        if rng.random() < 0.05:
            chunks.append(b"preamble text" + newline)
        for head, data in parts:
            chunks.append(b"--" + boundary + newline + newline.join(head) + newline + newline + data + newline)
        roll = rng.random()
        if roll < 0.04:
            notes.append("no-final-boundary")
        elif roll < 0.07:
            chunks.append(b"--" + boundary + b"--")
            raw = b"".join(chunks)
            notes.append("truncated")
            return raw[: rng.randint(0, len(raw))]
        else:
            chunks.append(b"--" + boundary + b"--" + newline)
        if rng.random() < 0.03:
            chunks.append(b"epilogue")
        return b"".join(chunks)


def regression_requests() -> list[FuzzRequest]:
    """Requests that once got a 5xx or hung (found by this fuzzer): every run sends them
    first, so a fix stays fixed whatever the seed."""
    chat = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]'
    json_type = [(b"content-type", b"application/json"), (b"authorization", b"Bearer sk-fuzz-a")]

    def deep(depth: int) -> bytes:
        return b"[" * depth + b"1" + b"]" * depth

    def form(*parts: bytes, end: bytes = b"--b--\r\n") -> bytes:
        return b"".join(b"--b\r\n" + part + b"\r\n" for part in parts) + end

    form_type = [(b"content-type", b"multipart/form-data; boundary=b"), (b"authorization", b"Bearer sk-fuzz-a")]
    cache_part = b'Content-Disposition: form-data; name="cache"\r\n\r\n{}'
    file_part = b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF'
    model_part = b'Content-Disposition: form-data; name="model"\r\n\r\nwhisper-1'
    return [
        FuzzRequest("/v1/chat/completions?api-version=2024-06-01", json_type, chat + b"}", "regression: query string"),
        FuzzRequest(
            "/v1/embeddings?x=%ff",
            json_type,
            b'{"model":"text-embedding-3-small","input":["a","b"]}',
            "regression: query string, embeddings batch",
        ),
        FuzzRequest(
            "/v1/audio/transcriptions?a=1&a=2",
            form_type,
            form(model_part, file_part),
            "regression: query string, multipart",
        ),
        FuzzRequest(
            "/v1/chat/completions",
            json_type,
            chat + b',"cache":{},"x":' + deep(300) + b"}",
            "regression: body rewritten (cache field) with nesting past orjson's writer",
        ),
        FuzzRequest(
            "/v1/embeddings",
            json_type,
            b'{"model":"text-embedding-3-small","input":"a","cache":{},"x":' + deep(300) + b"}",
            "regression: embeddings body rewritten with nesting past orjson's writer",
        ),
        FuzzRequest(
            "/v1/chat/completions",
            json_type,
            chat + b',"a":18446744073709552233,"x":' + deep(500) + b"}",
            "regression: an integer past 64 bits and deep nesting, keyed",
        ),
        FuzzRequest(
            "/v1/audio/transcriptions", form_type, form(cache_part), "regression: a form of only the cache field"
        ),
        FuzzRequest(
            "/v1/responses",
            json_type,
            b'{"model":"gpt-4o","input":"hi","background":true,"metadata":' + deep(900) + b"}",
            "regression: deep metadata, passed through (the fake upstream answered 500)",
        ),
        FuzzRequest(
            "/v1/audio/transcriptions",
            form_type,
            form(cache_part, end=b"--b\r\nConten"),
            "regression: a cache field, then a part cut off in its headers",
        ),
    ]


# =========================================================================== checking


@dataclass
class Finding:
    kind: str
    request: FuzzRequest
    status: int | None
    elapsed: float
    response_headers: Headers = field(default_factory=list)
    response_body: bytes = b""
    detail: str = ""

    def signature(self) -> tuple[Any, ...]:
        body = re.sub(rb"\d+", b"N", self.response_body[:120])
        return (self.kind, self.status, self.request.route, body, self.detail[:80])

    def describe(self) -> str:
        lines = [
            f"[{self.kind}] -> {self.status if self.status is not None else 'no response'} "
            f"in {self.elapsed:.2f} s{': ' + self.detail if self.detail else ''}"
        ]
        lines.append("  request: " + self.request.describe().replace("\n", "\n  "))
        if self.status is not None:
            shown = "; ".join(f"{n.decode('latin-1')}: {v.decode('latin-1')[:80]}" for n, v in self.response_headers)
            lines.append(f"  response headers: {shown}")
            lines.append(f"  response body: {_show(self.response_body, 600)}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "status": self.status,
            "elapsed_s": round(self.elapsed, 3),
            "detail": self.detail,
            "request": self.request.to_json(),
            "response_headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in self.response_headers],
            "response_body_b64": base64.b64encode(self.response_body[:65536]).decode(),
        }


def _header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _error_code(body: bytes) -> Any:
    """The OpenAI-shaped error's code; Anthropic's shape has none: its only-if-cached 504
    is told by its message."""
    try:
        error = json.loads(body)["error"]
        if "code" not in error and "only-if-cached" in error["message"]:
            return "only_if_cached"
        return error["code"]
    except (ValueError, KeyError, TypeError):
        return None


def _openai_shaped(headers: Headers, body: bytes) -> str | None:
    """Why an error the proxy wrote itself is not OpenAI-shaped (None when it is)."""
    content_type = (_header(headers, b"content-type") or b"").split(b";")[0].strip()
    if content_type != b"application/json":
        return f"content-type {content_type!r}"
    try:
        document = json.loads(body)
    except ValueError:
        return "body is not JSON"
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return "no error object"
    missing = [k for k in ("message", "type", "code") if not isinstance(error.get(k), str)]
    return f"error.{'/'.join(missing)} not a string" if missing else None


def from_upstream(status: int, headers: Headers, body: bytes, upstream_status: int | None, recorded: bool) -> bool:
    """Whether a response is the fake upstream's answer passed on: the recorder knows
    (the fake answered this request with this status), else the fake's x-request-id
    header, or uvicorn's own 500 of the fake (which the proxy tags with x-cache-status),
    tells."""
    if recorded and upstream_status == status:
        return True
    # Not recorded for this request: a follower of a coalesced call, or no recorder.
    request_id = _header(headers, b"x-request-id") or b""
    if request_id.startswith(b"req_"):
        return True
    return (
        status == 500 and body.startswith(b"Internal Server Error") and _header(headers, b"x-cache-status") is not None
    )


def check(
    request: FuzzRequest,
    status: int | None,
    headers: Headers,
    body: bytes,
    elapsed: float,
    error: str = "",
    upstream_status: int | None = None,
    recorded: bool = False,
) -> list[Finding]:
    """Findings of one exchange. `upstream_status`: what the fake upstream answered this
    request (None: it was not asked), when `recorded` (else it is not known)."""

    def finding(kind: str, detail: str = "") -> Finding:
        return Finding(kind, request, status, elapsed, headers, body, detail)

    found = []
    if status is None:
        kind = "hang" if "Timeout" in error else "no-response"
        return [finding(kind, error)]
    if elapsed > HANG_S:
        found.append(finding("hang", f"took {elapsed:.1f} s"))
    passed_through = from_upstream(status, headers, body, upstream_status, recorded)
    if status >= 500:
        code = _error_code(body)
        if status == 504 and code == "only_if_cached":
            if (_header(headers, b"x-should-retry") or b"").lower() != b"false":
                found.append(finding("only-if-cached-without-x-should-retry"))
        elif _header(request.headers, b"x-fake-status") is not None and (
            passed_through or code in UPSTREAM_FAILURE_CODES
        ):
            pass  # the fuzzer asked the upstream to fail (and no stale answer was there)
        elif passed_through:
            found.append(
                finding("upstream-5xx", "the fake upstream answered 5xx (it should not); the proxy passed it on")
            )
        elif code in UPSTREAM_FAILURE_CODES:
            found.append(finding("proxy-upstream-failure", f"{code} (the fake upstream answered {upstream_status})"))
        else:
            detail = (
                ""
                if not recorded
                else (
                    "the fake upstream was not called"
                    if upstream_status is None
                    else f"the fake upstream answered {upstream_status}"
                )
            )
            found.append(finding("proxy-5xx", detail))
    elif status >= 400 and not passed_through:
        anthropic = request.route in ANTHROPIC_ROUTES
        why = _anthropic_shaped(headers, body) if anthropic else _openai_shaped(headers, body)
        if why is not None:
            found.append(finding("error-shape", ("not Anthropic-shaped: " if anthropic else "") + why))
    elif 200 <= status < 300 and not request.admin:
        cache_status = _header(headers, b"x-cache-status")
        if cache_status is None:
            found.append(finding("no-x-cache-status"))
        warning = _header(headers, b"warning")
        if cache_status == b"stale" and (
            warning not in (b'110 - "Response is Stale"', b'111 - "Revalidation Failed"')
            or _header(headers, b"age") is None
        ):
            found.append(finding("stale-without-warning", f"warning {warning!r}"))
        elif cache_status != b"stale" and warning is not None:
            found.append(finding("warning-not-stale", f"x-cache-status {cache_status!r}, warning {warning!r}"))
        expected = expected_policy(request)
        sent = _header(headers, b"x-cache-policy")
        if expected is not UNKNOWN and sent != (None if expected is None else expected.encode()):
            found.append(finding("wrong-policy", f"x-cache-policy {sent!r}; the request matches {expected!r}"))
    return found


def _anthropic_shaped(headers: Headers, body: bytes) -> str | None:
    """Why an error the proxy wrote on /v1/messages is not Anthropic-shaped
    (`{"type": "error", "error": {"type": str, "message": str}}`), None when it is."""
    content_type = (_header(headers, b"content-type") or b"").split(b";")[0].strip()
    if content_type != b"application/json":
        return f"content-type {content_type!r}"
    try:
        document = json.loads(body)
    except ValueError:
        return "body is not JSON"
    if not isinstance(document, dict) or document.get("type") != "error":
        return 'no "type": "error"'
    error = document.get("error")
    if not isinstance(error, dict) or not all(isinstance(error.get(k), str) for k in ("type", "message")):
        return "error.type/message not strings"
    return None


UNKNOWN = "<unknown>"  # the fuzzer cannot tell which policy a request matches
_KEY_HEADERS = (b"authorization", b"x-api-key", b"api-key")


def expected_policy(request: FuzzRequest) -> str | None:
    """The name of the first of FUZZ_POLICIES that `request` matches (None: none), or
    UNKNOWN when the fuzzer cannot read the request as the proxy does (a form, duplicate
    JSON keys, a header sent twice)."""
    if request.route in ("/v1/audio/transcriptions", "/v1/audio/translations") or "duplicate-key" in request.note:
        return UNKNOWN
    sent: dict[bytes, list[bytes]] = {}
    for name, value in request.headers:
        sent.setdefault(name.lower(), []).append(value.strip(b" \t"))
    try:
        document = json.loads(request.body)
    except ValueError:
        return UNKNOWN
    model = document.get("model") if isinstance(document, dict) else None
    for policy in FUZZ_POLICIES:
        match = policy.get("match", {})
        for name, value in match.get("header", {}).items():
            values = sent.get(name.encode(), [])
            if len(values) > 1:
                return UNKNOWN
            if values != [value.encode()]:
                break
        else:
            glob = match.get("model")
            if glob is not None and not (isinstance(model, str) and fnmatch.fnmatchcase(model, glob)):
                continue
            digests = match.get("credential_sha256")
            if digests is not None and not any(
                hashlib.sha256(_api_key(name, value)).hexdigest() in digests
                for name in _KEY_HEADERS
                for value in sent.get(name, [])
            ):
                continue
            return str(policy["name"])
    return None


def _api_key(name: bytes, value: bytes) -> bytes:
    if name == b"authorization" and value[:7].lower() == b"bearer ":
        value = value[7:]
    return value.strip()


# =========================================================================== running


@dataclass
class Report:
    started: float = field(default_factory=time.monotonic)
    sent: int = 0
    bursts: int = 0
    explained: int = 0  # requests whose key was checked against POST /cache/explain
    replayed: int = 0  # seeds replayed with only-if-cached
    invalidations_checked: int = 0  # tagged requests replayed after an invalidation
    admin_refusals: Counter[str] = field(default_factory=Counter)  # what the admin routes refused, most often
    client_rejected: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_route: dict[str, Counter[str]] = field(default_factory=dict)
    cache_status: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")
    stopped_early: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(
        self, request: FuzzRequest, status: int | None, headers: Headers, elapsed: float, found: list[Finding]
    ) -> None:
        label = str(status) if status is not None else "none"
        with self.lock:
            self.sent += 1
            self.by_status[label] += 1
            self.by_route.setdefault(request.path.split("?", 1)[0], Counter())[label] += 1
            cache_status = _header(headers, b"x-cache-status")
            if cache_status is not None:
                self.cache_status[cache_status.decode("latin-1")] += 1
            if elapsed > self.slowest[0]:
                self.slowest = (elapsed, request.describe(200).splitlines()[0])
            self.findings.extend(found)

    def render(self, title: str = "llmcache route fuzzer", show_all: bool = False) -> str:
        lines = [
            title,
            f"requests sent: {self.sent} in {time.monotonic() - self.started:.0f} s"
            f" ({self.bursts} parallel bursts; {self.client_rejected} refused by the HTTP client before sending;"
            f" {self.explained} keys checked against /cache/explain; {self.replayed} seeds replayed;"
            f" {self.invalidations_checked} replays after an invalidation)",
        ]
        lines.append("by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(self.by_status.items())))
        lines.append("by route:")
        for route, counts in sorted(self.by_route.items()):
            total = sum(counts.values())
            detail = ", ".join(f"{s}: {n}" for s, n in sorted(counts.items()))
            lines.append(f"  {route:28} {total:6}  ({detail})")
        lines.append("x-cache-status: " + ", ".join(f"{s}: {n}" for s, n in sorted(self.cache_status.items())))
        lines.append(f"slowest: {self.slowest[0]:.2f} s  {self.slowest[1]}")
        if self.admin_refusals:
            lines.append("admin refusals, most frequent:")
            lines.extend(f"  {n:6}  {what}" for what, n in self.admin_refusals.most_common(12))
        if self.stopped_early:
            lines.append(f"stopped early: {self.stopped_early}")
        kinds = Counter(f.kind for f in self.findings)
        lines.append(
            f"findings: {len(self.findings)}"
            + (f" ({', '.join(f'{k}: {n}' for k, n in kinds.items())})" if kinds else "")
        )
        groups: dict[tuple[Any, ...], list[Finding]] = {}
        for found in self.findings:
            groups.setdefault(found.signature(), []).append(found)
        for number, (_, members) in enumerate(groups.items(), 1):
            shown = members if show_all else _diverse(members, 3)
            more = f" ({len(members)} like this, {len(shown)} shown)" if len(members) > 1 else ""
            lines.append(f"{number}.{more}")
            for found in shown:
                lines.append("   " + found.describe().replace("\n", "\n   "))
        if self.log_errors:
            lines.append(f"server log errors: {len(self.log_errors)}")
            for entry in self.log_errors:
                lines.append("  " + entry.replace("\n", "\n  "))
        return "\n".join(lines)

    @property
    def failed(self) -> bool:
        return bool(self.findings or self.log_errors)


def _diverse(findings: list[Finding], limit: int) -> list[Finding]:
    """Up to `limit` findings whose requests were generated differently, first ones first."""
    chosen: list[Finding] = []
    notes: set[str] = set()
    for found in findings:
        note = re.sub(r"\(\d+\)", "", found.request.note)
        if note not in notes:
            notes.add(note)
            chosen.append(found)
        if len(chosen) == limit:
            break
    return chosen


UpstreamStatus = Callable[[bytes], "int | None"]


def send(
    client: httpx.Client,
    root: str,
    request: FuzzRequest,
    fuzz_id: bytes,
    report: Report,
    upstream_status: UpstreamStatus | None = None,
) -> tuple[int | None, Headers, bytes]:
    """Send `request`, check its answer into `report`: (status, headers, body)."""
    request.fuzz_id = fuzz_id
    # A server strips the whitespace around a header value anyway; h11 refuses to send it.
    headers = [(name, value.strip(b" \t")) for name, value in request.headers]
    headers.append((b"x-fuzz-id", fuzz_id))
    started = time.monotonic()
    status: int | None = None
    response_headers: Headers = []
    body = b""
    error = ""
    try:
        response = client.request(request.method, root + request.path, content=request.body, headers=headers)
        status, response_headers, body = response.status_code, list(response.headers.raw), response.content
    except httpx.LocalProtocolError:  # h11 would not send it: not the proxy's doing
        with report.lock:
            report.client_rejected += 1
        return None, [], b""
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    elapsed = time.monotonic() - started
    upstream = upstream_status(fuzz_id) if upstream_status is not None else None
    found = check(request, status, response_headers, body, elapsed, error, upstream, upstream_status is not None)
    report.record(request, status, response_headers, elapsed, found)
    if request.admin and status is not None and status >= 400:
        message = re.sub(r"'[^']*'|\d+", "_", str(_error_message(body)))[:70]
        with report.lock:
            report.admin_refusals[f"{request.path} {status} {message}"] += 1
    return status, response_headers, body


def _error_message(body: bytes) -> Any:
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return body[:70]


TAG = re.compile(r"[A-Za-z0-9._:-]{1,64}")
ANSWER_ID = re.compile(rb'"id" ?: ?"([^"]+)"')


def tags_written(request: FuzzRequest) -> list[str]:
    """The tags a request's entries carry, when the fuzzer can tell for sure: one
    x-cache-tags header of valid tags, and no other control that could stop the write."""
    sent = [v for n, v in request.headers if n.lower() == b"x-cache-tags"]
    others = [n for n, _ in request.headers if n.lower().startswith((b"x-cache-", b"cache-control"))]
    if len(sent) != 1 or len(others) != 1 or b'"cache"' in request.body:
        return []
    tags = [t.strip() for t in sent[0].decode("latin-1").split(",")]
    return tags if tags and all(TAG.fullmatch(t) for t in tags) and len(set(tags)) <= 16 else []


def check_invalidated(client: httpx.Client, root: str, generator: Generator, answer: bytes, report: Report) -> None:
    """After POST /cache/invalidate, a request whose miss wrote an entry with one of the
    tags is not answered from that entry any more. The same key may since have been
    written again, by a request with other tags or none: the answer's id tells whether
    the entry served is the one that miss wrote."""
    try:
        invalidated = json.loads(answer)["invalidated"]
    except (ValueError, KeyError, TypeError):
        return
    for tag in invalidated:
        for earlier in generator.tagged.pop(tag, [])[-2:]:
            replay = FuzzRequest(
                earlier.path,
                earlier.headers + [(b"cache-control", b"only-if-cached")],
                earlier.body,
                f"replay after invalidating {tag!r}",
            )
            status, headers, body = send(client, root, replay, earlier.fuzz_id + b"-inv", report)
            with report.lock:
                report.invalidations_checked += 1
            served = _header(headers, b"x-cache-status")
            found = ANSWER_ID.search(body)
            if status == 200 and served in (b"hit", b"stale") and found and found.group(1) == earlier.answer_id:
                detail = f"served {served!r} (answer {earlier.answer_id!r}) after tag {tag!r} was invalidated"
                with report.lock:
                    report.findings.append(
                        Finding("served-after-invalidation", replay, status, 0.0, headers, body, detail)
                    )


def check_seeded(client: httpx.Client, root: str, seeding: FuzzRequest, answer: bytes, report: Report) -> None:
    """The request a 200 of PUT /cache/entries stored, sent with only-if-cached, is a hit
    of the key the route named (unless the seed's TTL is too short to tell)."""
    try:
        stored = json.loads(answer)
        key, ttl = stored["key"], stored["ttl_s"]
    except (ValueError, KeyError, TypeError):
        report.findings.append(Finding("seed-answer", seeding, 200, 0.0, [], answer, "not {key, ttl_s, ...}"))
        return
    if key is None or (ttl is not None and ttl < 30):
        return  # an embeddings batch (one key per item), or a seed that may have expired already
    replay: FuzzRequest = seeding.template
    status, headers, body = send(client, root, replay, seeding.fuzz_id + b"-replay", report)
    with report.lock:
        report.replayed += 1
    cache_status = _header(headers, b"x-cache-status")
    if status != 200 or cache_status != b"hit" or _header(headers, b"x-cache-key") != key.encode():
        detail = f"seeded key {key}; the replay got {status}, x-cache-status {cache_status!r}, key {_header(headers, b'x-cache-key')!r}"
        with report.lock:
            report.findings.append(Finding("seed-not-hit", replay, status, 0.0, headers, body, detail))


def check_explain(
    client: httpx.Client, root: str, request: FuzzRequest, key: bytes, admin_token: str, report: Report
) -> None:
    """POST /cache/explain of a request the proxy just answered with `x-cache-key: key`
    must name the same key."""
    described: dict[str, str] = {}
    for name, value in request.headers + [(b"x-fuzz-id", request.fuzz_id)]:
        lowered = name.decode("latin-1").lower()
        if lowered in described:
            return  # a header twice: a described request cannot say that
        described[lowered] = value.strip(b" \t").decode("latin-1")
    document = {
        "request": {"path": request.path, "headers": described, "body_base64": base64.b64encode(request.body).decode()}
    }
    explain = FuzzRequest(
        "/cache/explain",
        [(b"content-type", b"application/json"), (b"authorization", b"Bearer " + admin_token.encode())],
        json.dumps(document).encode(),
        f"explain of {request.fuzz_id.decode()} ({request.note})",
    )
    status, headers, body = send(client, root, explain, request.fuzz_id + b"-explain", report)
    with report.lock:
        report.explained += 1
    try:
        explained = json.loads(body).get("key") if status == 200 else None
    except (ValueError, AttributeError):
        explained = None
    if explained != key.decode("latin-1"):
        detail = f"x-cache-key {key.decode('latin-1')}, explain answered {status} with key {explained!r}"
        found = Finding("explain-key", request, status, 0.0, headers, body, detail)
        with report.lock:
            report.findings.append(found)


def worker(
    root: str,
    seed: int,
    report: Report,
    keep_going: Callable[[], bool],
    small: bool = False,
    max_body: int = 1 << 20,
    upstream_status: UpstreamStatus | None = None,
    burst_rate: float = 0.03,
    without: frozenset[str] = frozenset(),
    admin_token: str = ADMIN_TOKEN,
    explain_rate: float = 0.08,
) -> None:
    generator = Generator(seed, small=small, max_body=max_body, without=without, admin_token=admin_token)
    counter = 0
    timeout = httpx.Timeout(CLIENT_TIMEOUT_S, connect=5.0)
    with httpx.Client(timeout=timeout) as client:
        while keep_going():
            counter += 1
            if generator.rng.random() < burst_rate and "burst" not in generator.without:
                copies = generator.burst()
                with report.lock:
                    report.bursts += 1
                threads = [
                    threading.Thread(
                        target=_send_alone, args=(root, copy, b"%d-%d-%d" % (seed, counter, i), report, upstream_status)
                    )
                    for i, copy in enumerate(copies)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                continue
            request = generator.request()
            status, headers, body = send(client, root, request, b"%d-%d" % (seed, counter), report, upstream_status)
            if status is not None:
                generator.remember(request, status, headers, body)
                key = _header(headers, b"x-cache-key")
                if key and 200 <= status < 300 and not request.admin and generator.rng.random() < explain_rate:
                    check_explain(client, root, request, key, admin_token, report)
                if status == 200 and isinstance(request.template, FuzzRequest):
                    check_seeded(client, root, request, body, report)
                if status == 200 and request.path == "/cache/invalidate":
                    check_invalidated(client, root, generator, body, report)


def _send_alone(
    root: str, request: FuzzRequest, fuzz_id: bytes, report: Report, upstream_status: UpstreamStatus | None
) -> None:
    with httpx.Client(timeout=httpx.Timeout(CLIENT_TIMEOUT_S, connect=5.0)) as client:
        send(client, root, request, fuzz_id, report, upstream_status)


def run(
    root: str,
    seed: int,
    *,
    requests: int | None = None,
    seconds: float | None = None,
    concurrency: int = 1,
    small: bool = False,
    max_body: int = 1 << 20,
    upstream_status: UpstreamStatus | None = None,
    burst_rate: float = 0.03,
    max_hangs: int | None = None,
    without: frozenset[str] = frozenset(),
    regressions: bool = True,
    admin_token: str = ADMIN_TOKEN,
    explain_rate: float = 0.08,
) -> Report:
    """Fuzz the proxy at `root` until `requests` have been sent (counted per worker) or
    `seconds` have passed, or (with `max_hangs`) that many requests have hung. The
    regression requests go first (unless `regressions` is false)."""
    report = Report()
    deadline = None if seconds is None else time.monotonic() + seconds
    per_worker = None if requests is None else max(1, requests // concurrency)

    def make_keep_going() -> Callable[[], bool]:
        count = 0

        def keep_going() -> bool:
            nonlocal count
            count += 1
            if per_worker is not None and count > per_worker:
                return False
            if max_hangs is not None:
                hangs = sum(1 for f in report.findings if f.kind == "hang")
                if hangs >= max_hangs:
                    report.stopped_early = f"{hangs} requests hung"
                    return False
            return deadline is None or time.monotonic() < deadline

        return keep_going

    if regressions:
        with httpx.Client(timeout=httpx.Timeout(CLIENT_TIMEOUT_S, connect=5.0)) as client:
            for number, request in enumerate(regression_requests()):
                send(client, root, request, b"%d-regression-%d" % (seed, number), report, upstream_status)
    with ThreadPoolExecutor(concurrency) as pool:
        futures = [
            pool.submit(
                worker,
                root,
                seed * 1000 + i,
                report,
                make_keep_going(),
                small,
                max_body,
                upstream_status,
                burst_rate,
                without,
                admin_token,
                explain_rate,
            )
            for i in range(concurrency)
        ]
        for future in futures:
            future.result()
    return report


# =========================================================================== the fake, recorded


class RecordingUpstream:
    """Wraps the fake upstream's ASGI app: remembers the status it answered each
    x-fuzz-id with, and the traceback of any request it failed on."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.statuses: dict[bytes, int] = {}
        self.crashes: dict[bytes, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fuzz_id = next((v for k, v in scope["headers"] if k == b"x-fuzz-id"), None)

        async def recording_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start" and fuzz_id is not None:
                self.statuses[fuzz_id] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except Exception:
            if fuzz_id is not None:
                self.crashes[fuzz_id] = traceback.format_exc()
                self.statuses.setdefault(fuzz_id, 500)
            raise

    def status_of(self, fuzz_id: bytes) -> int | None:
        return self.statuses.get(fuzz_id)


# =========================================================================== the server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, upstream_url: str, port: int, max_body: int, tracing: bool = False) -> Path:
    path = directory / "llmcache.yaml"
    path.write_text(
        "server:\n"
        f"  host: 127.0.0.1\n  port: {port}\n  max_body_bytes: {max_body}\n"
        "upstream:\n"
        f"  base_url: {upstream_url}\n  timeout_s: 30\n"
        f"policies: {json.dumps(FUZZ_POLICIES)}\n"
        f"tracing: {{enabled: {json.dumps(tracing)}}}\n"
        "cache:\n"
        f"  stale: {json.dumps(FUZZ_CACHE['stale'])}\n"
        "  tiers:\n"
        "    - {type: local}\n"
        f"    - {{type: disk, path: {json.dumps(str(directory / 'cache'))}}}\n"
        "admin:\n"
        f"  token: {ADMIN_TOKEN}\n"
    )
    return path


class SpanSink:
    """An OTLP/HTTP endpoint that takes every export and keeps nothing but a count, so the
    server runs with tracing on (the `traceparent` values sent are continued)."""

    def __init__(self) -> None:
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                sink.exports += 1
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.exports = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_server(config: Path, port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--config", str(config), "--port", str(port)],
            cwd=REPO,
            env=None if env is None else {**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llmcache serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_server(process)
    raise RuntimeError(f"llmcache serve did not answer /health within 30 s:\n{log.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


LOG_START = re.compile(r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ )?(DEBUG|INFO|WARNING|ERROR|CRITICAL)[: ]")


def log_errors(text: str) -> list[str]:
    """ERROR/CRITICAL log entries and tracebacks, grouped by their last line, with a
    count; each shown by its head and the tail of its traceback."""
    entries: list[list[str]] = []
    current: list[str] = []
    level = ""
    for line in text.splitlines():
        match = LOG_START.match(line)
        if match:
            current, level = [line], match.group(1)
            entries.append(current)
        elif line.startswith("Traceback") and (
            level not in ("ERROR", "CRITICAL") or any(seen.startswith("Traceback") for seen in current)
        ):
            current, level = [line], "TRACEBACK"
            entries.append(current)
        else:
            current.append(line)
    grouped: dict[str, tuple[int, list[str]]] = {}
    for entry in entries:
        if not entry or not (
            (LOG_START.match(entry[0]) and LOG_START.match(entry[0]).group(1) in ("ERROR", "CRITICAL"))  # type: ignore[union-attr]
            or any(line.startswith("Traceback") for line in entry)
        ):
            continue
        last = entry[-1].strip() if len(entry) > 1 else re.sub(r"^\S+ \S+ ", "", entry[0])
        count, first = grouped.get(last, (0, entry))
        grouped[last] = (count + 1, first)
    shown = []
    for count, first in grouped.values():
        lines = first if len(first) <= 30 else first[:6] + ["    ..."] + first[-20:]
        shown.append(f"(x{count}) " + "\n".join(lines))
    return shown


# =========================================================================== main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_routes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--requests", type=int, default=None, help="stop after this many requests instead")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-body", type=int, default=1 << 20, help="the proxy's server.max_body_bytes")
    parser.add_argument("--all", action="store_true", help="show every finding, not one per group")
    parser.add_argument(
        "--without",
        default="",
        help=f"comma list of things not to generate (to get past a known finding): {', '.join(FEATURES)}",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "fuzz_routes.jsonl", help="every finding, in full")
    args = parser.parse_args(argv)
    unknown = set(filter(None, args.without.split(","))) - set(FEATURES)
    if unknown:
        parser.error(f"--without: unknown {', '.join(sorted(unknown))}; known: {', '.join(FEATURES)}")

    sys.path.insert(0, str(REPO))
    from tests.fake_upstream import FakeUpstream

    upstream = FakeUpstream()
    recorder = RecordingUpstream(upstream.app)
    upstream.app = recorder  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix="llmcache-fuzz-") as scratch, upstream:
        # The fake upstream runs in this process: its failures are findings (with their
        # tracebacks, from the recorder), not console noise; nor are its form parser's warnings.
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        logging.getLogger("python_multipart").setLevel(logging.ERROR)
        directory = Path(scratch)
        port = free_port()
        tracing = importlib.util.find_spec("opentelemetry.sdk") is not None
        sink = SpanSink()
        config = write_config(directory, upstream.url, port, args.max_body, tracing)
        log = directory / "server.log"
        server = start_server(config, port, log, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.url})
        root = f"http://127.0.0.1:{port}"
        title = (
            f"llmcache route fuzzer: seed {args.seed}, concurrency {args.concurrency}, "
            f"server {root} (pid {server.pid}), fake upstream {upstream.url}"
        )
        print(title + ": running", file=sys.stderr, flush=True)
        try:
            report = run(
                root,
                args.seed,
                requests=args.requests,
                seconds=None if args.requests else args.minutes * 60,
                concurrency=args.concurrency,
                max_body=args.max_body,
                upstream_status=recorder.status_of,
                without=frozenset(filter(None, args.without.split(","))),
            )
            alive = server.poll() is None
        finally:
            stop_server(server)
            sink.close()
        print(f"tracing {'on' if tracing else 'off (no opentelemetry)'}: {sink.exports} span exports", file=sys.stderr)
        report.log_errors = log_errors(log.read_text(errors="replace"))
        if not alive:
            report.log_errors.insert(0, f"the server exited during the run (code {server.returncode})")
        for found in report.findings:
            crash = recorder.crashes.get(found.request.fuzz_id)
            if crash:
                found.detail += "\nfake upstream traceback:\n" + crash
    print(report.render(title, show_all=args.all))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as out:
        for found in report.findings:
            out.write(json.dumps(found.to_json()) + "\n")
    print(f"every finding, in full: {args.out}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
