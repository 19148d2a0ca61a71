"""Properties of cache keys (issue 11 "Trust"): keys are injective over request bodies.

Two request bodies share a key exactly when they are semantically equal:

- JSON: equal after parsing with every number read as an exact `Decimal` (so 1 == 1.0 ==
  1e0 == 10e-1, and 18446744073709552233 != 18446744073709552234), ignoring the top-level
  fields `cache`, `stream` and `stream_options`. `model` is keyed. Key order, whitespace
  and string escapes do not matter.
- multipart/form-data: equal when every field name maps to the same parts in the same
  order, a part being its exact bytes, its filename (a file) or none (a text field), and
  its content type. The boundary does not matter.

And the context of a request — call type, credential scope, namespace, query string —
separates keys whatever the body.

Bodies are generated as trees whose numbers are literal text (so values a double cannot
hold survive generation), then spelled out with random whitespace, escapes, key order and
number spellings. The runs are derandomized and use no example database, so CI sees the
same examples every time; the whole module takes a few seconds.
"""

from __future__ import annotations

import decimal
import json
import random
import re
import subprocess
import sys
import unicodedata
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from app import keys
from app.errors import ProxyError

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
FEWER = settings(PROPERTY, max_examples=100)

CALL_TYPES = ("chat_completions", "completions", "embeddings", "transcriptions")
IGNORED_TOP_LEVEL = frozenset(("cache", "stream", "stream_options"))
CREDENTIAL_HEADERS = (b"authorization", b"api-key", b"x-api-key", b"openai-organization", b"openai-project")
EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")


def key_json(body: bytes, call_type: str = "chat_completions", **context: Any) -> str:
    return keys.key_of_json(call_type, body, **context)


def key_form(body: bytes, content_type: bytes, call_type: str = "transcriptions", **context: Any) -> str:
    return keys.key_of_form(call_type, body, content_type, **context)


# --------------------------------------------------------------------------- JSON trees
#
# ("null",) | ("bool", b) | ("num", literal text) | ("str", s) | ("arr", (node, ...)) |
# ("obj", ((key, node), ...)) with distinct keys.

Node = tuple[Any, ...]

SPECIAL_INTS = (
    0,
    1,
    -1,
    2**31,
    2**53,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    2**64 + 1,
    18446744073709552233,
    18446744073709552234,
    10**18 - 1,
    10**18,
    10**20,
    10**20 + 1,
    -(2**63) - 1,
    10**30 + 7,
)
SPECIAL_NUMBERS = (
    "0.1",
    "0.1000000000000000000001",
    "1e20",
    "100000000000000000001",
    "1.7976931348623157e308",
    "5e-324",
    "2.2250738585072014e-308",
    "0.30000000000000004",
    "9007199254740993",
    "1e-7",
    "123456789012345678901234567890.123456789",
    "1.0",
    "1e0",
    "100e-2",
    "0.0",
    "1E+2",
    "2.50",
    "1.00000000000000011102230246251565404236316680908203125",
)
SPECIAL_CHARS = '"\\/\b\f\n\r\t\x00\x1f\x7f\u00e9\u0301\u2028\u2029\ufeff\U0001f600\u00a0A'
KEY_NAMES = (
    "model",
    "messages",
    "role",
    "content",
    "tools",
    "function",
    "parameters",
    "maximum",
    "temperature",
    "n",
    "stream",
    "cache",
    "stream_options",
    "namespace",
    "input",
    "A",
    "a",
)


@st.composite
def decimal_literals(draw: st.DrawFn) -> str:
    negative = draw(st.booleans())
    whole = draw(st.one_of(st.integers(0, 9), st.integers(0, 10**20)))
    fraction = draw(st.text("0123456789", max_size=25))
    exponent = draw(st.none() | st.integers(-330, 330))
    text = ("-" if negative else "") + str(whole)
    if fraction:
        text += "." + fraction
    if exponent is not None:
        sign = "-" if exponent < 0 else draw(st.sampled_from(("", "+")))
        text += draw(st.sampled_from("eE")) + sign + str(abs(exponent))
    return text


def _within_double_range(literal: str) -> bool:
    value = abs(Decimal(literal))
    return value == 0 or Decimal("1e-307") < value < Decimal("1e308")


# Numbers a double can come near (anything more digits than it holds, but no overflow to
# infinity): the general properties. Numbers beyond a double's range have their own.
number_literals = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.integers(-(2**200), 2**200).map(str),
    st.sampled_from(SPECIAL_INTS).map(str),
    st.sampled_from(SPECIAL_NUMBERS),
    decimal_literals().filter(_within_double_range),
)


@st.composite
def wide_literals(draw: st.DrawFn) -> str:
    """Numbers beyond a double's range (1e309, 1e-400) or with thousands of digits (4000;
    Python reads at most 4300 into an int by default)."""
    mantissa = draw(decimal_literals())
    shift = draw(st.sampled_from((-1, 1))) * draw(st.integers(309, 2000))
    value = EXACT.scaleb(Decimal(mantissa), shift)
    if draw(st.booleans()):
        return draw(st.sampled_from(("1" + "0" * 3999, "-" + "9" * 4000, "1e400", "1e-400", "-1e309")))
    return _number_text(value)


texts = st.text(st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from(SPECIAL_CHARS)), max_size=10)
object_keys = st.one_of(st.sampled_from(KEY_NAMES), texts)
leaves = st.one_of(
    st.just(("null",)),
    st.booleans().map(lambda b: ("bool", b)),
    number_literals.map(lambda t: ("num", t)),
    texts.map(lambda s: ("str", s)),
)


def _containers(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.lists(children, max_size=4).map(lambda items: ("arr", tuple(items))),
        st.dictionaries(object_keys, children, max_size=4).map(lambda d: ("obj", tuple(d.items()))),
    )


values = st.recursive(leaves, _containers, max_leaves=12)
top_level_keys = object_keys.filter(lambda k: k not in IGNORED_TOP_LEVEL and k != "model")


@st.composite
def bodies(draw: st.DrawFn) -> Node:
    """A top-level object; it always has a `model` (absent vs null is its own test)."""
    model = draw(st.one_of(st.sampled_from(("gpt-4o", "gpt-4o-mini", "")).map(lambda s: ("str", s)), values))
    rest = draw(st.dictionaries(top_level_keys, values, max_size=5))
    return ("obj", (("model", model), *rest.items()))


# --------------------------------------------------------------------------- spelling

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SPACES = ("", " ", "  ", "\n", "\t", "\r\n", " \n\t ")


def _u_escape(char: str, rnd: random.Random) -> str:
    code = ord(char)
    if code > 0xFFFF:
        code -= 0x10000
        units = (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF))
    else:
        units = (code,)
    spelled = "".join(f"\\u{unit:04x}" for unit in units)
    return spelled.upper().replace("\\U", "\\u") if rnd.random() < 0.5 else spelled


def _string(text: str, rnd: random.Random | None) -> str:
    out = ['"']
    for char in text:
        must = char in '"\\' or ord(char) < 0x20
        if rnd is None:
            if must:
                out.append(_SHORT_ESCAPES.get(char) or f"\\u{ord(char):04x}")
            else:
                out.append(char)
            continue
        roll = rnd.random()
        if must:
            out.append(_SHORT_ESCAPES[char] if char in _SHORT_ESCAPES and roll < 0.5 else _u_escape(char, rnd))
        elif roll < 0.3:
            out.append(_u_escape(char, rnd))
        elif char == "/" and roll < 0.6:
            out.append("\\/")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def respell_number(literal: str, rnd: random.Random) -> str:
    """Another JSON spelling of the same exact value (the sign of a zero is kept)."""
    value = Decimal(literal)
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    minus = "-" if sign else ""
    if value == 0:
        spelled = minus + rnd.choice(("0", "0.0", "0.000", "0e5", "0E-3", "0e+0", "0.0e-7"))
    else:
        coefficient = "".join(map(str, digits)).lstrip("0")
        stripped = coefficient.rstrip("0")
        exponent += len(coefficient) - len(stripped)
        padding = rnd.randint(0, 3)
        mantissa = stripped + "0" * padding
        exponent -= padding
        style = rnd.random()
        if style < 0.3 and -40 <= exponent <= 0:
            # a plain decimal: 0.00123, 12.30
            point = len(mantissa) + exponent
            if point <= 0:
                spelled = minus + "0." + "0" * -point + mantissa
            elif point == len(mantissa):
                spelled = minus + mantissa
            else:
                spelled = minus + mantissa[:point] + "." + mantissa[point:]
        elif style < 0.45 and 0 <= exponent <= 40:
            spelled = minus + mantissa + "0" * exponent  # an integer
        else:
            after_point = rnd.randint(0, len(mantissa) - 1)
            head = mantissa[: len(mantissa) - after_point]
            tail = mantissa[len(mantissa) - after_point :]
            written = exponent + after_point
            spelled = minus + head + ("." + tail if tail else "")
            if written or rnd.random() < 0.5:
                marker = rnd.choice("eE")
                plus = "+" if written >= 0 and rnd.random() < 0.5 else ""
                spelled += f"{marker}{plus}{written}"
    assert JSON_NUMBER.match(spelled), spelled
    assert Decimal(spelled) == value and Decimal(spelled).is_signed() == value.is_signed(), (literal, spelled)
    return spelled


def dump(node: Node, rnd: random.Random | None = None) -> str:
    """The JSON text of a tree: plainly (rnd None), or with random whitespace, escapes,
    key order and number spellings that keep its meaning."""
    out: list[str] = []
    _dump(node, rnd, out)
    return "".join(out)


def _space(rnd: random.Random | None, out: list[str]) -> None:
    if rnd is not None and rnd.random() < 0.4:
        out.append(rnd.choice(_SPACES))


def _dump(node: Node, rnd: random.Random | None, out: list[str]) -> None:
    _space(rnd, out)
    kind = node[0]
    if kind == "null":
        out.append("null")
    elif kind == "bool":
        out.append("true" if node[1] else "false")
    elif kind == "num":
        out.append(node[1] if rnd is None or rnd.random() < 0.3 else respell_number(node[1], rnd))
    elif kind == "str":
        out.append(_string(node[1], rnd))
    elif kind == "arr":
        out.append("[")
        for index, item in enumerate(node[1]):
            if index:
                out.append(",")
            _dump(item, rnd, out)
        _space(rnd, out)
        out.append("]")
    else:
        members = list(node[1])
        if rnd is not None:
            rnd.shuffle(members)
        out.append("{")
        for index, (name, item) in enumerate(members):
            if index:
                out.append(",")
            _space(rnd, out)
            out.append(_string(name, rnd))
            _space(rnd, out)
            out.append(":")
            _dump(item, rnd, out)
        _space(rnd, out)
        out.append("}")
    _space(rnd, out)


# --------------------------------------------------------------------------- meaning


def _exact(number: Decimal) -> tuple[str, int]:
    if number == 0:
        return ("0", 0)  # -0 is 0
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    coefficient = "".join(map(str, digits)).lstrip("0")
    stripped = coefficient.rstrip("0")
    return (("-" if sign else "") + stripped, exponent + len(coefficient) - len(stripped))


def _meaning(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return (type(value).__name__, value)
    if isinstance(value, Decimal):
        return ("num", _exact(value))
    if isinstance(value, list):
        return ("arr", tuple(_meaning(v) for v in value))
    return ("obj", frozenset((k, _meaning(v)) for k, v in value.items()))


def meaning(body: bytes) -> Any:
    """What a body says, for keying purposes: exact numbers, top-level controls left out."""
    document = json.loads(body, parse_float=Decimal, parse_int=Decimal)
    assert isinstance(document, dict)
    return _meaning({k: v for k, v in document.items() if k not in IGNORED_TOP_LEVEL})


# --------------------------------------------------------------------------- mutations


def _paths(node: Node, here: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    found = [here]
    if node[0] == "arr":
        for index, item in enumerate(node[1]):
            found.extend(_paths(item, (*here, index)))
    elif node[0] == "obj":
        for index, (_, item) in enumerate(node[1]):
            found.extend(_paths(item, (*here, index)))
    return found


def _get(node: Node, path: tuple[int, ...]) -> Node:
    for index in path:
        node = node[1][index] if node[0] == "arr" else node[1][index][1]
    return node


def _put(node: Node, path: tuple[int, ...], new: Node) -> Node:
    if not path:
        return new
    index, rest = path[0], path[1:]
    if node[0] == "arr":
        items = list(node[1])
        items[index] = _put(items[index], rest, new)
        return ("arr", tuple(items))
    members = list(node[1])
    name, item = members[index]
    members[index] = (name, _put(item, rest, new))
    return ("obj", tuple(members))


def _number_text(value: Decimal) -> str:
    text = str(value)
    assert JSON_NUMBER.match(text), text
    return text


@st.composite
def _changed_number(draw: st.DrawFn, literal: str) -> Node:
    value = Decimal(literal)
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    how = draw(st.sampled_from(("nudge", "negate", "scale", "retype")))
    if how == "nudge":
        below = draw(st.sampled_from((0, 1, 17, 22)))
        step = Decimal((draw(st.integers(0, 1)), (1,), exponent - below))
        return ("num", _number_text(EXACT.add(value, step)))
    if how == "negate":
        return ("num", _number_text(EXACT.minus(value)))
    if how == "scale":
        return ("num", _number_text(EXACT.scaleb(value, draw(st.sampled_from((-1, 1))))))
    return draw(st.sampled_from((("str", literal), ("bool", value != 0), ("null",))))


@st.composite
def _changed_string(draw: st.DrawFn, text: str) -> Node:
    how = draw(st.sampled_from(("append", "replace", "drop", "normalize", "retype")))
    if how == "append":
        return ("str", text + draw(texts.filter(bool)))
    if how == "replace" and text:
        index = draw(st.integers(0, len(text) - 1))
        return ("str", text[:index] + draw(st.characters(exclude_categories=("Cs",))) + text[index + 1 :])
    if how == "drop" and text:
        return ("str", text[:-1])
    if how == "normalize":
        return ("str", unicodedata.normalize(draw(st.sampled_from(("NFC", "NFD", "NFKC"))), text))
    return draw(st.sampled_from((("null",), ("num", "0"), ("arr", (("str", text),)), ("bool", bool(text)))))


@st.composite
def _changed_container(draw: st.DrawFn, node: Node, top: bool) -> Node:
    items = list(node[1])
    how = draw(st.sampled_from(("add", "remove", "swap", "rename", "wrap")))
    if node[0] == "arr":
        if how == "add":
            items.insert(draw(st.integers(0, len(items))), draw(values))
        elif how == "remove" and items:
            del items[draw(st.integers(0, len(items) - 1))]
        elif how == "swap" and len(items) > 1:
            i, j = draw(st.integers(0, len(items) - 1)), draw(st.integers(0, len(items) - 1))
            items[i], items[j] = items[j], items[i]
        else:
            return ("obj", (("", node),)) if how == "wrap" else ("arr", (node,))
        return ("arr", tuple(items))
    names = {name for name, _ in items}
    movable = [i for i, (name, _) in enumerate(items) if not (top and name == "model")]
    fresh = (top_level_keys if top else object_keys).filter(lambda k: k not in names)
    if how == "add":
        items.append((draw(fresh), draw(values)))
    elif how == "remove" and movable:
        del items[draw(st.sampled_from(movable))]
    elif how == "rename" and movable:
        index = draw(st.sampled_from(movable))
        items[index] = (draw(fresh), items[index][1])
    elif not top:
        return ("arr", (node,)) if how == "wrap" else ("arr", tuple(v for _, v in items))
    else:
        items.append((draw(fresh), ("null",)))
    return ("obj", tuple(items))


@st.composite
def mutants(draw: st.DrawFn, body: Node) -> Node:
    """`body` with one thing changed somewhere (possibly into something equal: callers
    filter those out)."""
    path = draw(st.sampled_from(_paths(body)))
    node = _get(body, path)
    kind = node[0]
    if draw(st.integers(0, 9)) == 0 and path:
        new = draw(values)
    elif kind == "num":
        new = draw(_changed_number(node[1]))
    elif kind == "str":
        new = draw(_changed_string(node[1]))
    elif kind == "bool":
        new = draw(st.sampled_from((("bool", not node[1]), ("null",), ("num", "1" if node[1] else "0"))))
    elif kind == "null":
        new = draw(st.sampled_from((("bool", False), ("num", "0"), ("str", ""), ("arr", ()), ("obj", ()))))
    else:
        new = draw(_changed_container(node, top=not path))
    return _put(body, path, new)


# --------------------------------------------------------------------------- 1. injectivity


@PROPERTY
@given(data=st.data())
def test_bodies_that_differ_get_different_keys(data: st.DataObject) -> None:
    first = data.draw(bodies(), "first")
    second = data.draw(mutants(first), "second")
    rnd = data.draw(st.randoms(use_true_random=False), "spelling")
    a, b = dump(first).encode(), dump(second, rnd).encode()
    assume(meaning(a) != meaning(b))
    assert key_json(a) != key_json(b), (a, b)


@FEWER
@given(first=bodies(), second=bodies())
def test_unrelated_bodies_get_different_keys(first: Node, second: Node) -> None:
    a, b = dump(first).encode(), dump(second).encode()
    assume(meaning(a) != meaning(b))
    assert key_json(a) != key_json(b), (a, b)


def _tool_schema(maximum: str) -> bytes:
    return (
        '{"model": "gpt-4o", "messages": [{"role": "user", "content": "pick"}], "tools": [{"type": "function",'
        ' "function": {"name": "pick", "parameters": {"type": "object", "properties": {"n": {"type": "integer",'
        ' "minimum": 0, "maximum": ' + maximum + "}}}}}]}"
    ).encode()


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("18446744073709552233", "18446744073709552234"),
        ("0.1", "0.1000000000000000000001"),
        ("1e20", "100000000000000000001"),
        ("9007199254740992", "9007199254740993"),
        ("1e400", "1e401"),  # beyond a double's range: still a number, still keyed exactly
        ("-1e400", "1e400"),
        ("1e-400", "0"),  # below a double's smallest: not zero
        ("1e-400", "2e-400"),
        ("1" + "0" * 3999, "1" + "0" * 3998 + "1"),  # thousands of digits (Python reads up to 4300)
        ("1.5", '"1.5"'),
        ("1", "true"),
        ("0", "false"),
        ("0", "null"),
    ],
)
def test_numbers_are_keyed_by_exact_value(left: str, right: str) -> None:
    assert key_json(_tool_schema(left)) != key_json(_tool_schema(right))
    body = '{"model": "m", "temperature": %s}'
    assert key_json((body % left).encode()) != key_json((body % right).encode())


@PROPERTY
@given(first=wide_literals(), second=st.one_of(wide_literals(), number_literals), rnd=st.randoms(use_true_random=False))
def test_numbers_beyond_a_double_are_keyed_exactly(first: str, second: str, rnd: random.Random) -> None:
    body = '{"model": "m", "x": [%s]}'
    a, b = (body % first).encode(), (body % second).encode()
    assert (key_json(a) == key_json(b)) == (Decimal(first) == Decimal(second))
    assert key_json(a) == key_json((body % respell_number(first, rnd)).encode())


@pytest.mark.parametrize("digits", [4301, 20_000])
def test_an_integer_too_long_to_read_is_refused_not_confused(digits: int) -> None:
    """Past 4300 digits an integer may be refused (a 400), but never keyed as another."""
    body = '{"model": "m", "x": %s}'
    keys_seen = set()
    for literal in ("1" + "0" * (digits - 1), "1" + "0" * (digits - 2) + "1"):
        try:
            keys_seen.add(key_json((body % literal).encode()))
        except ProxyError as refused:
            assert refused.status == 400
            return
    assert len(keys_seen) == 2


def test_huge_exponents_key_quickly() -> None:
    """An exponent is not an invitation to expand the number: 1e999999999 keys in well
    under a second (a child process, so a runaway expansion cannot take the suite down)."""
    program = (
        "from app.keys import key_of_json\n"
        'a = key_of_json(\'chat_completions\', b\'{"model": "m", "temperature": 1e999999999}\')\n'
        'b = key_of_json(\'chat_completions\', b\'{"model": "m", "temperature": 1e999999998}\')\n'
        'c = key_of_json(\'chat_completions\', b\'{"model": "m", "temperature": -1e-999999999}\')\n'
        "assert len({a, b, c}) == 3\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("depth", [100, 254, 255, 256, 300, 500, 900, 1000, 1100, 5000])
@pytest.mark.parametrize("beside", ["", '"a": 18446744073709552233, ', '"a": 1e400, '])
def test_deep_bodies_are_keyed_or_refused(depth: int, beside: str) -> None:
    """Any nesting depth gets a key or a 400, never another exception (a 500)."""
    for nested in ("[" * depth + "1" + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        body = f'{{"model": "m", {beside}"x": {nested}}}'.encode()
        try:
            key_json(body)
        except ProxyError as refused:
            assert refused.status == 400


def test_absent_model_and_null_model_are_different_requests() -> None:
    assert key_json(b'{"messages": []}') != key_json(b'{"messages": [], "model": null}')


def test_nested_controls_are_keyed() -> None:
    """Only the top-level `cache`, `stream` and `stream_options` are left out."""
    base = key_json(b'{"model": "m", "metadata": {}}')
    assert key_json(b'{"model": "m", "metadata": {"stream": true}}') != base
    assert key_json(b'{"model": "m", "metadata": {"cache": {"ttl": 1}}}') != base
    assert key_json(b'{"model": "m", "metadata": {"stream_options": null}}') != base


# --------------------------------------------------------------------------- 2. agreement


@st.composite
def top_level_controls(draw: st.DrawFn) -> list[tuple[str, Node]]:
    choices = {
        "stream": st.sampled_from((("bool", True), ("bool", False), ("null",))),
        "stream_options": st.sampled_from((("obj", (("include_usage", ("bool", True)),)), ("obj", ()), ("null",))),
        "cache": st.sampled_from(
            (
                ("obj", (("ttl", ("num", "60")),)),
                ("obj", (("no-store", ("bool", True)),)),
                ("obj", (("s-maxage", ("num", "5")), ("no-cache", ("bool", False)))),
                ("obj", ()),
            )
        ),
    }
    names = draw(st.lists(st.sampled_from(sorted(choices)), unique=True))
    return [(name, draw(choices[name])) for name in names]


@PROPERTY
@given(body=bodies(), rnd=st.randoms(use_true_random=False), controls=top_level_controls())
def test_equal_bodies_share_a_key(body: Node, rnd: random.Random, controls: list[tuple[str, Node]]) -> None:
    plain = dump(body).encode()
    spelled = dump(("obj", body[1] + tuple(controls)), rnd).encode()
    assert meaning(plain) == meaning(spelled), "the generator changed the meaning"
    assert key_json(plain) == key_json(spelled), (plain, spelled)


ONE = ("1", "1.0", "1e0", "100e-2", "1.000", "0.1e1", "10E-1", "1E+0")


@pytest.mark.parametrize("spelling", ONE[1:])
def test_one_is_one_at_any_depth(spelling: str) -> None:
    template = '{"model": "m", "n": %s, "a": [{"b": {"c": [[%s, {"d": %s}]]}}]}'
    assert key_json((template % ((spelling,) * 3)).encode()) == key_json((template % (("1",) * 3)).encode())


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("18446744073709552233", "1.8446744073709552233e19"),
        ("1e20", "100000000000000000000"),
        ("1e20", "100000000000000000000.000"),
        ("0.1000000000000000000001", "1000000000000000000001e-22"),
        ("1e400", "10e399"),
        ("1e-400", "0.1e-399"),
        ("-0", "0"),  # the same exact value
        ("-0.0", "0"),
        ("2.50", "2.5"),
    ],
)
def test_equal_numbers_share_a_key(left: str, right: str) -> None:
    assert key_json(_tool_schema(left)) == key_json(_tool_schema(right))


def test_escapes_and_literal_characters_share_a_key() -> None:
    literal = '{"model": "m", "messages": [{"role": "user", "content": "A\u00e9\U0001f600/"}]}'.encode()
    escaped = b'{"model": "m", "messages": [{"role": "user", "content": "\\u0041\\u00E9\\ud83d\\ude00\\/"}]}'
    assert key_json(literal) == key_json(escaped)
    assert key_json(b'{"\\u006dodel": "m"}') == key_json(b'{"model": "m"}')


@pytest.mark.parametrize(
    "extra",
    [
        ', "stream": true',
        ', "stream": false',
        ', "stream": null',
        ', "stream_options": {"include_usage": true}',
        ', "cache": {"ttl": 60}',
        ', "cache": {"no-store": true}, "stream": true, "stream_options": {"include_usage": false}',
    ],
)
def test_top_level_controls_are_not_keyed(extra: str) -> None:
    base = '{"model": "m", "messages": [{"role": "user", "content": "hi"}]%s}'
    assert key_json((base % extra).encode()) == key_json((base % "").encode())


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"1", b"null", b"", b"{", b'{"a": 1} x', b"\xff"])
def test_a_body_that_is_not_a_json_object_is_a_400(body: bytes) -> None:
    with pytest.raises(ProxyError) as raised:
        key_json(body)
    assert raised.value.status == 400


# --------------------------------------------------------------------------- 3. context

namespaces = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}", fullmatch=True)
contexts = st.tuples(
    st.sampled_from(CALL_TYPES),
    st.none() | st.just(keys.ANONYMOUS) | st.text(min_size=1, max_size=8),
    st.none() | namespaces,
    st.text(max_size=12),
)


@PROPERTY
@given(body=bodies(), first=contexts, second=contexts)
@example(
    body=("obj", (("model", ("str", "m")),)),
    first=("chat_completions", "a", None, ""),
    second=("chat_completions", None, "a", ""),
)
@example(
    body=("obj", (("model", ("str", "m")),)),
    first=("chat_completions", "a", None, ""),
    second=("chat_completions", None, None, "a"),
)
@example(
    body=("obj", (("model", ("str", "m")),)),
    first=("chat_completions", None, None, ""),
    second=("chat_completions", None, None, "api-version=2024-06-01"),
)
def test_call_type_scope_namespace_and_query_separate_keys(
    body: Node, first: tuple[Any, ...], second: tuple[Any, ...]
) -> None:
    assume(first != second)
    raw = dump(body).encode()

    def key(context: tuple[Any, ...]) -> str:
        call_type, scope, namespace, query = context
        return key_json(raw, call_type, scope=scope, namespace=namespace, query=query)

    assert key(first) != key(second)
    assert key(first) == key(first)


@pytest.mark.parametrize(
    "change",
    [
        {"call_type": "completions"},
        {"call_type": "embeddings"},
        {"call_type": "transcriptions"},
        {"scope": "0123456789abcdef0123456789abcdef"},
        {"scope": None},
        {"namespace": "team-a"},
        {"query": "api-version=2024-06-01"},
    ],
)
def test_each_context_part_changes_the_key(change: dict[str, Any]) -> None:
    body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}'
    context: dict[str, Any] = {"call_type": "chat_completions", "scope": keys.ANONYMOUS, "namespace": None, "query": ""}
    changed = {**context, **change}
    assert key_json(body, **context) != key_json(body, **changed)


header_values = st.binary(min_size=1, max_size=12).map(
    lambda raw: bytes(b if 0x21 <= b <= 0x7E or b >= 0x80 else 0x61 for b in raw)
)
credentials = st.dictionaries(st.sampled_from(CREDENTIAL_HEADERS), header_values, max_size=3)


@PROPERTY
@given(first=credentials, second=credentials)
def test_credentials_separate_scopes_and_anonymous_is_no_credential(
    first: dict[bytes, bytes], second: dict[bytes, bytes]
) -> None:
    """Credential scope (written against `credential_scope([(name, value), ...])`)."""
    a = keys.credential_scope(list(first.items()))
    b = keys.credential_scope(list(second.items()))
    assert (a == keys.ANONYMOUS) == (not first)
    assert (a == b) == (first == second)
    if first != second:
        body = b'{"model": "m"}'
        assert key_json(body, scope=a) != key_json(body, scope=b)


# --------------------------------------------------------------------------- 4. multipart

Part = tuple[str, bytes, "str | None", "str | None"]  # name, data, filename (a file), content type

BCHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? "
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
# Header text a client can send: printable, no quote or backslash (those have their own test).
safe_text = st.text(st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp"), exclude_characters='"\\'), max_size=8)
part_names = st.one_of(
    st.sampled_from(("file", "model", "language", "prompt", "timestamp_granularities[]", "x")), safe_text
)
content_types = (
    st.none()
    | st.sampled_from(("audio/wav", "text/plain", "application/octet-stream"))
    | st.from_regex(r"[a-z]{1,8}/[a-z0-9.+-]{1,10}", fullmatch=True)
)
parts = st.tuples(
    part_names.filter(lambda n: n != "cache"), st.binary(max_size=48), st.none() | safe_text, content_types
)
forms = st.lists(parts, max_size=6)
boundaries = st.text(BCHARS, min_size=1, max_size=70).filter(lambda b: not b.endswith(" "))


def _quoted(text: str) -> bytes:
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


def encode_form(form: list[Part], boundary: str, quote: bool = False) -> tuple[bytes, bytes]:
    """(body, content-type) of a multipart/form-data request carrying `form`."""
    delimiter = b"--" + boundary.encode()
    chunks = []
    for name, data, filename, ctype in form:
        head = b"Content-Disposition: form-data; name=" + _quoted(name)
        if filename is not None:
            head += b"; filename=" + _quoted(filename)
        head += b"\r\n"
        if ctype is not None:
            head += b"Content-Type: " + ctype.encode() + b"\r\n"
        chunks.append(delimiter + b"\r\n" + head + b"\r\n" + data + b"\r\n")
    chunks.append(delimiter + b"--\r\n")
    parameter = boundary.encode() if TOKEN.match(boundary) and not quote else _quoted(boundary)
    return b"".join(chunks), b"multipart/form-data; boundary=" + parameter


def _fits(form: list[Part], boundary: str) -> bool:
    """The boundary does not occur inside the parts (a client picks one that does not)."""
    delimiter = b"--" + boundary.encode()
    return not any(
        delimiter in data or delimiter in name.encode() or delimiter in (filename or "").encode()
        for name, data, filename, _ in form
    )


def form_meaning(form: list[Part]) -> dict[str, list[tuple[bytes, str | None, str | None]]]:
    fields: dict[str, list[tuple[bytes, str | None, str | None]]] = {}
    for name, data, filename, ctype in form:
        fields.setdefault(name, []).append((data, filename, ctype))
    return fields


@st.composite
def form_mutants(draw: st.DrawFn, form: list[Part]) -> list[Part]:
    form = list(form)
    how = draw(st.sampled_from(("data", "name", "filename", "ctype", "add", "remove", "swap", "duplicate")))
    if not form or how == "add":
        form.insert(draw(st.integers(0, len(form))), draw(parts))
        return form
    index = draw(st.integers(0, len(form) - 1))
    name, data, filename, ctype = form[index]
    if how == "data":
        data = draw(st.sampled_from((data + b"\x00", data[:-1], b"\xff" + data, data.replace(b"a", b"b"))))
        form[index] = (name, data, filename, ctype)
    elif how == "name":
        form[index] = (draw(part_names.filter(lambda n: n != "cache")), data, filename, ctype)
    elif how == "filename":
        form[index] = (name, data, draw(st.sampled_from((None, "", "a.wav", (filename or "") + "x"))), ctype)
    elif how == "ctype":
        form[index] = (name, data, filename, draw(content_types))
    elif how == "remove":
        del form[index]
    elif how == "swap":
        other = draw(st.integers(0, len(form) - 1))
        form[index], form[other] = form[other], form[index]
    else:
        form.insert(index, form[index])
    return form


@PROPERTY
@given(data=st.data())
def test_forms_that_differ_get_different_keys(data: st.DataObject) -> None:
    first = data.draw(forms, "first")
    second = data.draw(st.one_of(form_mutants(first), forms), "second")
    assume(form_meaning(first) != form_meaning(second))
    boundary = data.draw(boundaries.filter(lambda b: _fits(first, b) and _fits(second, b)), "boundary")
    a, b = encode_form(first, boundary), encode_form(second, boundary)
    assert key_form(*a) != key_form(*b), (a, b)


@PROPERTY
@given(data=st.data())
def test_a_form_keys_the_same_whatever_its_boundary(data: st.DataObject) -> None:
    form = data.draw(forms, "form")
    first = data.draw(boundaries.filter(lambda b: _fits(form, b)), "first boundary")
    second = data.draw(boundaries.filter(lambda b: _fits(form, b)), "second boundary")
    quote = data.draw(st.booleans(), "quote the boundary")
    assert key_form(*encode_form(form, first)) == key_form(*encode_form(form, second, quote))


FILE = ("file", b"RIFF\x00audio", "clip.wav", "audio/wav")


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("language", b"\xff", None, None), ("language", b"\xfe", None, None)),
        (("language", b"\xff", None, None), ("language", "\ufffd".encode(), None, None)),
        (("language", b"fr", None, None), ("language", b"fr", None, "text/plain")),
        (("language", b"fr", None, None), ("language", b"fr", "", None)),
        (FILE, ("file", FILE[1], "clip.mp3", FILE[3])),
        (FILE, ("file", FILE[1], FILE[2], "audio/mpeg")),
        (FILE, ("file", FILE[1] + b"\x00", FILE[2], FILE[3])),
        (FILE, ("file", FILE[1], FILE[2], None)),
    ],
)
def test_form_parts_are_keyed_exactly(left: Part, right: Part) -> None:
    model = ("model", b"whisper-1", None, None)
    assert key_form(*encode_form([model, left], "xyz")) != key_form(*encode_form([model, right], "xyz"))


def test_repeated_fields_keep_their_order_and_count() -> None:
    def key(*values: bytes) -> str:
        return key_form(*encode_form([("timestamp_granularities[]", v, None, None) for v in values], "b"))

    assert len({key(b"word"), key(b"word", b"word"), key(b"word", b"segment"), key(b"segment", b"word")}) == 4


# Names and filenames that need quoting: a backslash or a quote inside, or a Windows path
# (which some parsers cut down to its last segment).
awkward_text = st.text(st.sampled_from('ab\\"; =:/\u00e9'), max_size=8)


@FEWER
@given(data=st.data())
def test_names_and_filenames_with_quotes_and_backslashes_stay_apart(data: st.DataObject) -> None:
    first = data.draw(st.tuples(awkward_text, awkward_text), "first (name, filename)")
    second = data.draw(st.tuples(awkward_text, awkward_text), "second (name, filename)")
    assume(first != second and "cache" not in (first[0], second[0]))
    a = encode_form([(first[0], b"x", first[1], None)], "b0undary")
    b = encode_form([(second[0], b"x", second[1], None)], "b0undary")
    assert key_form(*a) != key_form(*b), (a, b)


def test_a_windows_path_filename_is_not_its_last_segment() -> None:
    a = encode_form([("file", b"x", "C:\\clips\\a.wav", None)], "b")
    b = encode_form([("file", b"x", "a.wav", None)], "b")
    assert key_form(*a) != key_form(*b)


def test_a_part_name_that_is_not_utf8_is_a_400() -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="\xff"\r\n\r\nx\r\n--b--\r\n'
    with pytest.raises(ProxyError) as raised:
        key_form(body, b"multipart/form-data; boundary=b")
    assert raised.value.status == 400 and raised.value.code == "invalid_multipart"


def test_the_cache_field_is_not_keyed() -> None:
    form = [("model", b"whisper-1", None, None), FILE]
    control = ("cache", b'{"ttl": 60}', None, None)
    assert key_form(*encode_form(form, "b")) == key_form(*encode_form([*form, control], "b"))
