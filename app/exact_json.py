"""JSON request bodies parsed so that every number keeps its exact value, and written back
so that it still does.

orjson reads every number into a 64-bit int or a double: `18446744073709552233` and
`…234` both become 1.8446744073709552e19. A key built on that tree would let two
different requests share an entry, and a body rebuilt from it would send the upstream
another request. So bodies are parsed by msgspec, which keeps integers exact and hands
each decimal literal over as its text, at the same speed as orjson (1 µs for 1 KB).

Every number gets exactly one representation, so equal numbers key alike (`1`, `1.0`,
`1e0`, `100e-2`) and different numbers never do:

- an integral value orjson can write (-2**63 … 2**64-1): a Python int;
- any other value that the shortest form of its nearest double spells exactly: that
  double (what `0.1` is everywhere);
- anything else (integers past 64 bits, decimals past a double's 15-17 digits): an
  `orjson.Fragment` of the value's one normalized decimal spelling, written back verbatim.
"""

from __future__ import annotations

import decimal
from typing import Any

import msgspec
import orjson

from app.errors import bad_request

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson writes as an integer
# Exact arithmetic for normalize(): no rounding, no overflow, whatever the literal.
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
# A decimal literal of at most 15 characters without an exponent has at most 14 digits:
# its nearest double spells it exactly.
_SHORT = 15


def _number(text: str) -> Any:
    if len(text) <= _SHORT and "e" not in text and "E" not in text:
        nearest = float(text)
        return int(nearest) if nearest.is_integer() else nearest
    value = decimal.Decimal(text)
    if value == value.to_integral_value(context=_EXACT):
        if _INT_MIN <= value <= _INT_MAX:
            return int(value)
    else:
        nearest = float(value)
        if decimal.Decimal(repr(nearest)) == value:
            return nearest
    return orjson.Fragment(str(value.normalize(_EXACT)).encode())


_DECODER = msgspec.json.Decoder(float_hook=_number)


def parse_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object with exact numbers; a 400 for anything else."""
    try:
        payload = _DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(payload, dict):
        raise bad_request("request body must be a JSON object", "invalid_json")
    return payload


def dumps(value: Any, option: int | None = None) -> bytes:
    """`value` (a request body, or part of one) as JSON bytes, exact: integers past what
    orjson writes (msgspec keeps them as Python ints) go as their normalized decimal
    spelling, like other exact numbers. A body orjson cannot write (nesting deeper than
    its 254 levels: msgspec reads deeper) is a 400."""
    try:
        try:
            return orjson.dumps(value, option=option)
        except orjson.JSONEncodeError as exc:
            if "Integer" not in str(exc):
                raise
        return orjson.dumps(_big_ints_spelled(value), option=option)
    except (orjson.JSONEncodeError, RecursionError) as exc:
        raise bad_request(f"request body cannot be written back: {exc}", "invalid_json") from None


def _big_ints_spelled(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _big_ints_spelled(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_big_ints_spelled(v) for v in value]
    if type(value) is int and not _INT_MIN <= value <= _INT_MAX:
        return orjson.Fragment(str(decimal.Decimal(value).normalize(_EXACT)).encode())
    return value
