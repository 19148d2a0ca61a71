"""Per-request cache control from `x-cache-*` headers, `Cache-Control` and the body.

Precedence, strongest first: `x-cache-<name>` header, `Cache-Control`, body `cache`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from app.errors import ProxyError, bad_request
from app.tags import TAG_RULE, read_tags
from app.types import MAX_TTL_S, valid_namespace

# The per-request controls, in the order the README lists them.
CONTROLS = (
    "ttl",
    "s-maxage",
    "namespace",
    "no-cache",
    "no-store",
    "use-cache",
    "similarity-threshold",
    "ignore-params",
    "tags",
    "max-stale",
    "stale-if-error",
)
CONTROL_NAMES = frozenset(CONTROLS)
_TRUE = frozenset(("true", "1", "yes", "on"))
_FALSE = frozenset(("false", "0", "no", "off"))


@dataclass(slots=True)
class CacheControl:
    ttl_s: float | None = None  # None: the configured default
    max_age_s: float | None = None
    namespace: str | None = None
    no_cache: bool = False
    no_store: bool = False
    use_cache: bool | None = None
    only_if_cached: bool = False
    similarity_threshold: float | None = None
    ignore_params: frozenset[str] = frozenset()
    # RFC 5861 windows (None: the configured ones); max-stale serves stale and revalidates.
    max_stale_s: float | None = None
    stale_if_error_s: float | None = None
    tags: tuple[str, ...] = ()  # given to the entries the call writes


def invalid(name: str, value: Any, expected: str) -> ProxyError:
    return bad_request(f"invalid cache control {name}={value!r}: expected {expected}", "invalid_cache_control")


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise invalid(name, value, "true or false")


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise invalid(name, value, "a number of seconds")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise invalid(name, value, "a number of seconds") from None
    if not math.isfinite(number) or number < 0 or number > MAX_TTL_S:
        raise invalid(name, value, f"a number of seconds from 0 to {MAX_TTL_S}")
    return number


def _fraction(name: str, value: Any) -> float:
    number = _seconds(name, value) if not isinstance(value, bool) else None
    if number is None or number > 1:
        raise invalid(name, value, "a number between 0 and 1")
    return number


def _namespace(name: str, value: Any) -> str:
    if not isinstance(value, str) or not valid_namespace(value):
        raise invalid(name, value, "1-128 characters of letters, digits, '.', '_' or '-'")
    return value


def _names(name: str, value: Any) -> frozenset[str]:
    """A comma list (header) or a list of strings (body) of top-level parameter names."""
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",")]
    elif isinstance(value, list) and all(isinstance(part, str) for part in value):
        names = [part.strip() for part in value]
    else:
        raise invalid(name, value, "a comma-separated list of parameter names")
    if any(not part or len(part) > 128 for part in names):
        raise invalid(name, value, "parameter names of 1-128 characters")
    return frozenset(names)


def _tags(name: str, value: Any) -> tuple[str, ...]:
    tags = read_tags(value)
    if tags is None:
        raise invalid(name, value, f"a comma-separated list of tags: {TAG_RULE}")
    return tags


_PARSERS = {
    "ttl": ("ttl_s", _seconds),
    "s-maxage": ("max_age_s", _seconds),
    "namespace": ("namespace", _namespace),
    "no-cache": ("no_cache", _bool),
    "no-store": ("no_store", _bool),
    "use-cache": ("use_cache", _bool),
    "similarity-threshold": ("similarity_threshold", _fraction),
    "ignore-params": ("ignore_params", _names),
    "max-stale": ("max_stale_s", _seconds),
    "stale-if-error": ("stale_if_error_s", _seconds),
    "tags": ("tags", _tags),
}


def parse_control(headers: dict[str, str] | None, cache_control: str | None, body_control: Any) -> CacheControl:
    """Merge the three sources into one CacheControl; a bad value raises a 400."""
    control = CacheControl()
    if body_control is not None:
        if not isinstance(body_control, dict):
            raise bad_request("the 'cache' field must be an object", "invalid_cache_control")
        for name, value in body_control.items():
            if name not in _PARSERS:
                raise bad_request(
                    f"unknown cache control {name!r}; known: {', '.join(sorted(CONTROL_NAMES))}",
                    "invalid_cache_control",
                )
            _apply(control, name, value)
    if cache_control:
        _apply_cache_control(control, cache_control)
    if headers:
        for name, value in headers.items():
            if name in _PARSERS:
                _apply(control, name, value)
    return control


def _apply(control: CacheControl, name: str, value: Any) -> None:
    attribute, parse = _PARSERS[name]
    setattr(control, attribute, parse(name, value))


def _apply_cache_control(control: CacheControl, header: str) -> None:
    for directive in header.split(","):
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name == "no-cache":
            control.no_cache = True
        elif name == "no-store":
            control.no_store = True
        elif name == "only-if-cached":
            control.only_if_cached = True
        elif name in ("max-age", "s-maxage"):
            control.max_age_s = _seconds(name, value.strip().strip('"'))
        elif name == "max-stale":
            # Without a value the client takes an answer however stale (RFC 9111 5.2.1.2):
            # as stale as the tiers still hold.
            control.max_stale_s = _seconds(name, value.strip().strip('"')) if "=" in directive else MAX_TTL_S
        elif name == "stale-if-error":
            control.stale_if_error_s = _seconds(name, value.strip().strip('"'))
        # Other directives (private, min-fresh, ...) carry no meaning for this cache.
