"""JSON request bodies parsed so that every number keeps its exact value.

orjson reads every number into a 64-bit int or a double: `18446744073709552233` and
`…234` both become 1.8446744073709552e19, and `1e20` becomes a float that has no 64-bit
integer form to write back. A key built on that tree would let two different requests
share an entry, and a body rebuilt from it would send the upstream another request.

orjson is exact for the numbers clients send nearly always: integers of up to 15 digits
and decimals of up to 15 significant digits (a double holds 15 digits exactly). Only a
body with a longer number, an exponent or a zero fraction (`1.0`, which must key like
`1`) is parsed a second time, by the standard library, into exact values:

- an integral value below 10**18: a Python int (what orjson gives for `1`);
- a decimal that the shortest form of its nearest double spells exactly: that double
  (what orjson gives for `0.1`);
- anything else: an `orjson.Fragment` holding the value's one normalized decimal
  spelling, which orjson writes back verbatim.

Each value then has exactly one representation, so equal numbers key alike (`1`, `1.0`,
`1e0`) and different numbers never do.
"""

from __future__ import annotations

import decimal
import json
import re
from typing import Any

import orjson

from app.errors import bad_request

# A number literal follows `:`, `[` or `,`. Matches a superset of the literals orjson may
# not keep exactly; text inside strings that looks the same only costs a slower parse.
_INEXACT = re.compile(rb"[:\[,]\s*-?(?:\d[\d.]{15}|\d+(?:\.\d*)?[eE]|\d+\.0+(?![\d]))")
_SAFE_INT = 10**18
# Exact arithmetic for normalize(): no rounding, no overflow, whatever the literal.
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def parse_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object with exact numbers; a 400 for anything else."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"request body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(payload, dict):
        raise bad_request("request body must be a JSON object", "invalid_json")
    if _INEXACT.search(body) is None:
        return payload
    # orjson has accepted it, so it is valid JSON: the second parse cannot fail on syntax,
    # only on nesting deeper than Python's recursion allows (orjson reads 1024 levels).
    try:
        exact: dict[str, Any] = json.loads(body, parse_int=_exact_int, parse_float=_exact_number)
    except RecursionError:
        raise bad_request("request body nests too deeply", "invalid_json") from None
    return exact


def _exact_int(text: str) -> Any:
    if len(text) <= 18:
        return int(text)
    return _exact_number(text)


def _exact_number(text: str) -> Any:
    value = decimal.Decimal(text)
    if value == value.to_integral_value(context=_EXACT):
        if abs(value) < _SAFE_INT:
            return int(value)
    else:
        nearest = float(value)
        if decimal.Decimal(repr(nearest)) == value:
            return nearest
    return orjson.Fragment(str(value.normalize(_EXACT)).encode())
