"""The fast path (issue 16) decides every request as the whole pipeline does.

The property: after one process has handled any set of requests, what its memo holds for
a request is exactly what the whole pipeline decides for that request on its own — the
same plan (call type, model, key, s-maxage), or nothing where the pipeline keys nothing
a hit could answer (a bypass, a refresh, a replayed stream, a batch, a 400). Requests are
generated as near-duplicates of each other (shared bodies, shared header sets), varying
everything the pipeline reads: route, query, body bytes (key order, whitespace, the
`cache` field, `stream`), credentials (repeated ones too), `x-cache-*` controls,
`Cache-Control`, `anthropic-*` headers, content type and length; and headers it does
not read, which must not matter. Each configuration varies what the settings decide:
caching groups, glob routes and renamed models, ignored parameters, shared keys, a
namespace, `default_off` and a subset of call types.

The slow side is the real pipeline up to its lookup: `serve` is where a call is handed
to the lookup, so the recording pipeline below replaces only that step (it records the
call and remembers its plan as `serve` does), with a real local tier in the chain.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.asgi import Message, Receive, Send, send_response
from app.background import Background
from app.calls.base import Call
from app.calls.registry import HANDLERS, ROUTES
from app.config import Settings
from app.memo import MAX_PLANS, Memo, Plan, memo_key
from app.metrics import Metrics
from app.pipeline import Pipeline
from app.request import is_read, read_head
from app.runtime import build_chain
from app.upstream import Upstream

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

CONFIGS = {
    "routed": {
        "cache": {
            "tiers": [{"type": "local"}],
            "ignore_params": ["user"],
            "caching_groups": [["grp-a", "grp-b"]],
        },
        "models": [
            {"name": "claude-*", "base_url": "http://anthropic.invalid/v1"},
            {"name": "gpt-4o", "upstream_model": "gpt-4o-2024-08-06"},
        ],
    },
    "shared": {
        "cache": {
            "tiers": [{"type": "local"}],
            "share_across_keys": True,
            "namespace": "cfg",
            "mode": "default_off",
            "call_types": ["chat_completions", "embeddings", "messages", "transcriptions"],
        },
    },
}


class Recording(Pipeline):
    """The whole pipeline, up to the lookup: the call it would look up is recorded."""

    served: Call | None = None

    async def serve(self, call: Call, receive: Receive, send: Send) -> None:
        self.remember(call)
        self.served = call
        await send_response(send, 204, [], b"")


def pipeline(config: dict[str, Any], memo: bool) -> Recording:
    settings_ = Settings(upstream={"base_url": "http://up.invalid/v1"}, **config)
    metrics = Metrics()
    chain = build_chain(settings_, metrics, Background())
    upstream = Upstream(httpx.AsyncHTTPTransport(), settings_.upstream)
    made = Recording(settings_, chain, upstream, metrics)
    if not memo:
        made.memo = None
    return made


Request = tuple[str, bytes, list[tuple[bytes, bytes]], bytes]  # path, query, headers, body


async def run(made: Recording, request: Request) -> Call | None:
    path, query, headers, body = request
    scope = {"type": "http", "method": "POST", "path": path, "query_string": query, "headers": headers}
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        return None

    made.served = None
    await made.handle(ROUTES[path], scope, receive, send)
    return made.served


def fast_plan(made: Recording, request: Request) -> Plan | None:
    """What the memo holds for `request` (None also where its head is refused)."""
    path, query, headers, body = request
    scope = {"path": path, "query_string": query, "headers": headers}
    try:
        head = read_head(scope)
    except Exception:
        return None
    key = memo_key(path, query, head.read, body)
    assert made.memo is not None
    return None if key is None else made.memo.get(key)


# --------------------------------------------------------------------------- requests

JSON_PATHS = sorted(
    p for p, h in ROUTES.items() if not p.endswith(("/transcriptions", "/translations", "/edits", "/variations"))
)
# Messages keys headers of its own: drawn more often.
JSON_PATHS += ["/v1/messages"] * 4
FORM_PATHS = ["/v1/audio/transcriptions", "/audio/transcriptions"]
MODELS = ["gpt-4o", "gpt-4o-mini", "grp-a", "grp-b", "claude-3-haiku", 7, None]
CONTROL_VALUES = {
    "namespace": ["n1", "n2", "bad ns!"],
    "ttl": [5, "10", -1],
    "s-maxage": [0, 100, "abc"],
    "no-cache": [True, False],
    "no-store": [True],
    "use-cache": [True, False, "maybe"],
    "ignore-params": ["temperature", ["temperature", "user"], 3],
}
HEADER_CHOICES: list[tuple[bytes, list[bytes]]] = [
    (b"authorization", [b"Bearer sk-a", b"Bearer sk-b", b""]),
    (b"api-key", [b"az-1"]),
    (b"x-api-key", [b"ant-1", b"ant-2"]),
    (b"openai-organization", [b"org-1"]),
    (b"openai-project", [b"proj-1"]),
    (b"x-cache-namespace", [b"n1", b"n2", b"bad ns!"]),
    (b"x-cache-ttl", [b"30", b"abc"]),
    (b"x-cache-s-maxage", [b"0", b"60", b"x"]),
    (b"x-cache-no-cache", [b"true", b"false"]),
    (b"x-cache-no-store", [b"1"]),
    (b"x-cache-use-cache", [b"true", b"false"]),
    (b"x-cache-ignore-params", [b"temperature", b"user,temperature", b""]),
    (b"x-cache-similarity-threshold", [b"0.5", b"2"]),
    (b"x-cache-unknown", [b"1"]),
    (b"cache-control", [b"no-cache", b"max-age=0", b"max-age=30", b"only-if-cached", b"no-store", b"max-age=x"]),
    (b"anthropic-version", [b"2023-06-01", b"2024-01-01"]),
    (b"anthropic-beta", [b"tools-2024"]),
    (b"content-type", [b"application/json", b"text/plain"]),
    # Headers the pipeline does not read: they must not change a decision.
    (b"x-request-id", [b"r1", b"r2"]),
    (b"user-agent", [b"OpenAI/Python 1.0", b"curl"]),
    (b"x-stainless-retry-count", [b"0", b"1"]),
]


def spell(body: dict[str, Any], order: int, spaced: bool) -> bytes:
    items = list(body.items())
    random.Random(order).shuffle(items)
    return json.dumps(dict(items), separators=(", ", ": ") if spaced else (",", ":")).encode()


@st.composite
def json_params(draw: st.DrawFn) -> tuple[str, Any]:
    text = draw(st.sampled_from(["hi", "hello", "hi "]))
    name = draw(
        st.sampled_from(
            ["model", "messages", "input", "prompt", "temperature", "user", "stream", "stream_options"]
            + ["background", "conversation", "cache"]
        )
    )
    value: Any
    if name == "model":
        value = draw(st.sampled_from(MODELS))
    elif name == "messages":
        value = [{"role": "user", "content": text}]
    elif name == "input":
        value = draw(st.sampled_from([text, [text], [text, "two"], [1, 2], []]))
    elif name == "temperature":
        value = draw(st.sampled_from([0, 0.5, 1, 1.0, "x"]))
    elif name == "user":
        value = draw(st.sampled_from(["u1", "u2"]))
    elif name == "stream":
        value = draw(st.sampled_from([True, False, None, "yes"]))
    elif name == "stream_options":
        value = {"include_usage": draw(st.booleans())}
    elif name == "cache":
        names = draw(st.lists(st.sampled_from(sorted(CONTROL_VALUES)), max_size=2, unique=True))
        control: Any = {n: draw(st.sampled_from(CONTROL_VALUES[n])) for n in names}
        value = draw(st.sampled_from([control, control, control, "not an object", {"bogus": 1}]))
    else:
        value = text if name in ("prompt", "conversation") else True
    return name, value


@st.composite
def json_bodies(draw: st.DrawFn) -> list[bytes]:
    """A body and near-duplicates of it: respelled, one parameter changed, added or dropped."""
    base = dict(draw(st.lists(json_params(), max_size=5)))
    base.setdefault("model", "gpt-4o")
    bodies = [spell(base, 0, False)]
    for _ in range(draw(st.integers(0, 3))):
        variant = dict(base)
        change = draw(st.sampled_from(["respell", "set", "drop"]))
        if change == "set":
            name, value = draw(json_params())
            variant[name] = value
        elif change == "drop" and variant:
            del variant[draw(st.sampled_from(sorted(variant)))]
        bodies.append(spell(variant, draw(st.integers(0, 3)), draw(st.booleans())))
    bodies += bodies[:1] * len(bodies)  # most requests share the first body: their heads differ
    if draw(st.integers(0, 20)) == 0:
        bodies.append(draw(st.sampled_from([b"{", b"[]", b"null", b'{"model": 1e400}'])))
    return bodies


@st.composite
def form_bodies(draw: st.DrawFn) -> list[bytes]:
    boundary = "b0undary"
    bodies = []
    for _ in range(draw(st.integers(1, 3))):
        fields = [("model", draw(st.sampled_from(["whisper-1", "grp-a"])))]
        if draw(st.booleans()):
            fields.append(("language", "en"))
        if draw(st.integers(0, 3)) == 0:
            fields.append(("cache", draw(st.sampled_from(['{"namespace": "n1"}', "{bad"]))))
        if draw(st.integers(0, 4)) == 0:
            fields.append(("stream", "true"))
        parts = [f'--{boundary}\r\ncontent-disposition: form-data; name="{n}"\r\n\r\n{v}\r\n' for n, v in fields]
        audio = draw(st.sampled_from([b"RIFF1", b"RIFF2"]))
        head = f'--{boundary}\r\ncontent-disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'.encode()
        bodies.append("".join(parts).encode() + head + audio + f"\r\n--{boundary}--\r\n".encode())
    return bodies


@st.composite
def header(draw: st.DrawFn) -> tuple[bytes, bytes]:
    name, values = draw(st.sampled_from(HEADER_CHOICES))
    return name, draw(st.sampled_from(values))


@st.composite
def header_sets(draw: st.DrawFn, form: bool) -> list[list[tuple[bytes, bytes]]]:
    """A head and near-duplicates of it: one header added (perhaps a repeat), dropped or
    changed, or the headers in another order."""
    base = [(b"host", b"llmcache"), *draw(st.lists(header(), max_size=5))]
    sets = [base]
    for _ in range(draw(st.integers(1, 4))):
        variant = list(base)
        change = draw(st.sampled_from(["add", "drop", "change", "reorder"]))
        at = draw(st.integers(0, len(variant)))
        if change == "add":
            variant.insert(at, draw(header()))
        elif change == "drop" and at < len(variant):
            del variant[at]
        elif change == "change" and at < len(variant):
            name = variant[at][0]
            values = dict(HEADER_CHOICES).get(name, [b"other"])
            variant[at] = (name, draw(st.sampled_from(values)))
        elif change == "reorder":
            random.Random(at).shuffle(variant)
        sets.append(variant)
    if form:
        sets = [[(n, v) for n, v in s if n != b"content-type"] for s in sets]
        for s in sets:
            s.append((b"content-type", b"multipart/form-data; boundary=b0undary"))
    return sets


@st.composite
def batches(draw: st.DrawFn) -> list[Request]:
    form = draw(st.integers(0, 5)) == 0
    bodies = draw(form_bodies() if form else json_bodies())
    heads = draw(header_sets(form))
    paths = FORM_PATHS if form else JSON_PATHS
    path = draw(st.sampled_from(paths))
    requests: list[Request] = []
    for _ in range(draw(st.integers(2, 12))):
        body = draw(st.sampled_from(bodies))
        headers = list(draw(st.sampled_from(heads)))
        if draw(st.integers(0, 12)) == 0:
            headers.append((b"content-length", b"abc"))
        elif draw(st.booleans()):
            headers.append((b"content-length", str(len(body)).encode()))
        query = draw(st.sampled_from([b"", b"", b"a=1", b"a=2"]))
        if draw(st.integers(0, 4)) == 0:
            path = draw(st.sampled_from(paths))
        requests.append((path, query, headers, body))
    return requests


# --------------------------------------------------------------------------- the property


PIPELINES: dict[str, tuple[Recording, Recording]] = {}


async def check(config: str, requests: list[Request]) -> int:
    if config not in PIPELINES:
        PIPELINES[config] = pipeline(CONFIGS[config], memo=True), pipeline(CONFIGS[config], memo=False)
    fast, slow = PIPELINES[config]
    fast.memo = Memo()  # each example starts with nothing remembered
    for request in requests:  # the fast side's memo fills as the requests come
        await run(fast, request)
    remembered = 0
    for request in requests:
        call = await run(slow, request)
        expected = None if call is None else slow.plan_of(call)
        assert fast_plan(fast, request) == expected, request
        remembered += expected is not None
    return remembered


@pytest.mark.parametrize("config", sorted(CONFIGS))
@PROPERTY
@given(requests=batches())
def test_the_memo_holds_what_the_whole_pipeline_decides(config: str, requests: list[Request]) -> None:
    asyncio.run(check(config, requests))


def test_plans_are_remembered_and_found() -> None:
    """The property is not vacuous: ordinary requests are remembered, and found again
    whatever the headers the pipeline does not read."""
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()
    base = [(b"authorization", b"Bearer sk-a"), (b"content-type", b"application/json")]
    first: Request = ("/v1/chat/completions", b"", [*base, (b"x-request-id", b"1")], body)
    again: Request = ("/v1/chat/completions", b"", [(b"user-agent", b"x"), *base, (b"x-request-id", b"2")], body)
    other_key: Request = ("/v1/chat/completions", b"", [(b"authorization", b"Bearer sk-b"), base[1]], body)

    async def scenario() -> None:
        fast = pipeline(CONFIGS["routed"], memo=True)
        call = await run(fast, first)
        assert call is not None and call.key is not None
        assert fast_plan(fast, again) == Plan("chat_completions", "gpt-4o", call.key, None)  # type: ignore[arg-type]
        assert fast_plan(fast, other_key) is None  # another credential: not this plan

    asyncio.run(scenario())


def test_every_keyed_header_is_read() -> None:
    """A header a call type keys is one the memo's key covers."""
    for handler in HANDLERS:
        for name in handler.key_headers:
            assert is_read(name), (handler.call_type, name)


def test_memo_is_bounded() -> None:
    memo = Memo(limit=8)
    plan = Plan("chat_completions", "m", "k", None)  # type: ignore[arg-type]
    keys = [memo_key("/v1/chat/completions", b"", [], str(i).encode()) for i in range(20)]
    for key in keys:
        assert key is not None
        memo.remember(key, plan)
    assert len(memo) == 8
    assert memo.get(keys[-1]) == plan and memo.get(keys[0]) is None
    assert MAX_PLANS >= 1024
    # A body too large to parse on the loop is not remembered, nor is a large head.
    assert memo_key("/v1/chat/completions", b"", [], b"x" * (1 << 20)) is None
    big = memo_key("/v1/chat/completions", b"", [(b"authorization", b"x" * 4096)], b"{}")
    assert big is not None
    memo.remember(big, plan)
    assert memo.get(big) is None
