"""Request bodies parse to exact values: what orjson would round, and nothing else, is
parsed again exactly (the property tests in tests/test_key_properties.py cover all inputs)."""

from __future__ import annotations

import orjson
import pytest

from app.errors import ProxyError
from app.exact_json import dumps, parse_object


def test_common_bodies_take_orjson_as_is() -> None:
    body = b'{"model": "m", "temperature": 0.7, "max_tokens": 100, "messages": [{"content": "v1.05 at 10:30"}]}'
    assert parse_object(body) == orjson.loads(body)


@pytest.mark.parametrize(
    "literal, value",
    [
        (b"1.0", 1),
        (b"1e0", 1),
        (b"-0.0", 0),
        (b"100.000", 100),
        (b"2.5e1", 25),
        (b"1e17", 10**17),
        (b"0.30000000000000004", 0.30000000000000004),
        (b"123456789012345678", 123456789012345678),
    ],
)
def test_numbers_that_fit_become_the_values_orjson_gives_for_their_short_form(literal: bytes, value: object) -> None:
    parsed = parse_object(b'{"n": ' + literal + b"}")["n"]
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize(
    "literal, spelled",
    [
        (b"18446744073709552233", b"18446744073709552233"),
        (b"1e20", b"1E+20"),
        (b"100000000000000000000", b"1E+20"),
        (b"0.1000000000000000000001", b"0.1000000000000000000001"),
        (b"1e-400", b"1E-400"),
        (b"1e400", b"1E+400"),
        (b"18446744073709551615", b"18446744073709551615"),  # the largest integer orjson writes
        (b"1.8446744073709551615e19", b"18446744073709551615"),
    ],
)
def test_numbers_past_a_double_keep_one_exact_spelling(literal: bytes, spelled: bytes) -> None:
    parsed = parse_object(b'{"schema": {"maximum": [' + literal + b"]}}")
    assert dumps(parsed) == b'{"schema":{"maximum":[' + spelled + b"]}}"


def test_different_big_numbers_stay_different() -> None:
    a = parse_object(b'{"maximum": 18446744073709552233}')
    b = parse_object(b'{"maximum": 18446744073709552234}')
    assert dumps(a) != dumps(b)


@pytest.mark.parametrize("big", [False, True])
def test_what_orjson_cannot_write_back_is_a_400(big: bool) -> None:
    deep: list = [10**30] if big else []
    for _ in range(600):
        deep = [deep]
    with pytest.raises(ProxyError) as raised:
        dumps(deep)
    assert raised.value.status == 400


DEEP = b'{"a":' + b"[" * 1020 + b"1.0" + b"]" * 1020 + b"}"


TOO_LONG = b'{"a": ' + b"7" * 5000 + b"}"  # past Python's 4300-digit bound for integers


@pytest.mark.parametrize("body", [b"[1]", b'"x"', b"{", b'{"a": NaN}', b'{"a": "\\ud800"}', DEEP, TOO_LONG])
def test_anything_but_a_json_object_is_a_400(body: bytes) -> None:
    with pytest.raises(ProxyError) as raised:
        parse_object(body)
    assert raised.value.status == 400
