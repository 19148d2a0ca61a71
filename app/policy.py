"""Per-tenant cache policies: the `policies:` of the config, compiled once, and the one
that applies to a request.

A policy is matched by what the request carries: its credential (the SHA-256 hex of the
API key, so the config never holds a key), headers such as `x-team`, and a glob over
the body's `model`. All the conditions a policy gives must hold; the first policy whose
conditions hold applies, and no match leaves the request to the global `cache` settings.

What a policy changes, each only where it sets a value (null: the global value):
- `mode`: default_on, or default_off (then only `use-cache: true` is cached);
- `ttl_s`: the TTL of its entries when a request asks for none; `max_ttl_s`: the longest
  TTL an entry gets — a longer one asked for (or the default) is clamped to it;
- `allow_controls` / `deny_controls`: the per-request controls its requests may send;
  sending another, whatever its value, is a 400 `policy_forbids_control`;
- `semantic: false`: no semantic lookup or index write for its requests;
- `namespace`: its entries' namespace. A request's own `namespace` control (if the policy
  allows it) names a namespace nested in it, `<policy>.<request>`: a tenant cannot leave
  its policy's namespace, and the config refuses policies whose namespaces nest so that
  one tenant could name another's.

The header a policy is matched by becomes part of what a lookup depends on, so it is
added to the request's read headers (`Head.read`), which key the fast path's plans.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import translate
from typing import TYPE_CHECKING, Any

from app.control import CONTROL_NAMES
from app.errors import ProxyError, bad_request
from app.request import Head, is_read
from app.types import valid_namespace

if TYPE_CHECKING:
    from app.config import PolicySettings

# How each `Cache-Control` directive llmcache reads is named in a policy's controls:
# max-age is the s-maxage control; only-if-cached has no `x-cache-*` form.
CACHE_CONTROL_DIRECTIVES = {
    "no-cache": "no-cache",
    "no-store": "no-store",
    "max-age": "s-maxage",
    "s-maxage": "s-maxage",
    "only-if-cached": "only-if-cached",
    "max-stale": "max-stale",
    "stale-if-error": "stale-if-error",
}
CONTROLLABLE = CONTROL_NAMES | frozenset(CACHE_CONTROL_DIRECTIVES.values())
# The credential headers whose value is an API key (`authorization`: after `Bearer `).
KEY_HEADERS = frozenset((b"authorization", b"x-api-key", b"api-key"))
# Digests and model verdicts remembered, at most (a process sees few of each).
MAX_REMEMBERED = 1024
_BEARER = b"bearer "


def controls_sent(headers: dict[str, str], cache_control: str | None, body_control: Any) -> set[str]:
    """The names of the controls a request sends, from any of their three sources."""
    sent = {name for name in headers if name in CONTROL_NAMES}
    if cache_control:
        for directive in cache_control.split(","):
            name = CACHE_CONTROL_DIRECTIVES.get(directive.partition("=")[0].strip().lower())
            if name is not None:
                sent.add(name)
    if isinstance(body_control, dict):
        sent.update(name for name in body_control if name in CONTROL_NAMES)
    return sent


def forbids(policy: str, control: str) -> ProxyError:
    return bad_request(f"policy {policy!r} does not allow the cache control {control!r}", "policy_forbids_control")


_DIGESTS: dict[bytes, str] = {}


def key_digest(name: bytes, value: bytes) -> str:
    """The SHA-256 hex of the API key a credential header carries."""
    if name == b"authorization" and value[:7].lower() == _BEARER:
        value = value[7:]
    value = value.strip()
    digest = _DIGESTS.get(value)
    if digest is None:
        digest = hashlib.sha256(value).hexdigest()
        if len(_DIGESTS) >= MAX_REMEMBERED:
            _DIGESTS.clear()
        _DIGESTS[value] = digest
    return digest


@dataclass(eq=False, slots=True)
class Policy:
    name: str
    credentials: frozenset[str] | None
    headers: tuple[tuple[bytes, bytes], ...]
    model: re.Pattern[str] | None
    mode: str | None
    ttl_s: float | None
    max_ttl_s: float | None
    forbidden: frozenset[str]
    semantic: bool | None
    namespace: str | None
    stale_if_error_s: float | None
    stale_while_revalidate_s: float | None
    header: tuple[bytes, bytes]  # x-cache-policy
    line: bytes  # the same header, as the fast path writes it
    _models: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: PolicySettings) -> Policy:
        match = settings.match
        if settings.allow_controls is not None:
            forbidden = CONTROLLABLE - frozenset(settings.allow_controls)
        else:
            forbidden = frozenset(settings.deny_controls or ())
        return cls(
            settings.name,
            None if match.credential_sha256 is None else frozenset(match.credential_sha256),
            tuple((n.encode(), v.encode()) for n, v in (match.header or {}).items()),
            None if match.model is None else re.compile(translate(match.model)),
            settings.mode,
            settings.ttl_s,
            settings.max_ttl_s,
            forbidden,
            settings.semantic,
            settings.namespace,
            settings.stale_if_error_s,
            settings.stale_while_revalidate_s,
            (b"x-cache-policy", settings.name.encode()),
            b"x-cache-policy: " + settings.name.encode() + b"\r\n",
        )

    def matches(self, head: Head, model: Any) -> bool:
        if self.headers:
            sent = head.policy_headers
            if sent is None or any(sent.get(name) != value for name, value in self.headers):
                return False
        if self.model is not None and not (isinstance(model, str) and self.matches_model(model)):
            return False
        if self.credentials is not None:
            credentials = self.credentials
            return any(
                name in KEY_HEADERS and key_digest(name, value) in credentials for name, value in head.credentials
            )
        return True

    def matches_model(self, model: str) -> bool:
        verdict = self._models.get(model)
        if verdict is None:
            verdict = self.model is not None and self.model.match(model) is not None
            if len(self._models) >= MAX_REMEMBERED:
                self._models.clear()
            self._models[model] = verdict
        return verdict

    def check(self, head: Head, body_control: Any) -> None:
        """Refuse a request that sends a control this policy does not allow."""
        if not (head.controls or head.cache_control or body_control is not None):
            return
        refused = controls_sent(head.controls, head.cache_control, body_control) & self.forbidden
        if refused:
            raise forbids(self.name, min(refused))

    def nested(self, namespace: str) -> str:
        """A request's own namespace, within this policy's (which it has)."""
        nested = f"{self.namespace}.{namespace}"
        if not valid_namespace(nested):
            raise bad_request(
                f"namespace {namespace!r} is too long within policy {self.name!r}'s namespace {self.namespace!r} "
                "(128 characters in all)",
                "invalid_cache_control",
            )
        return nested

    def ttl(self, asked: float | None, default: float | None) -> float | None:
        """An entry's TTL: asked for, else this policy's default, else the global one,
        clamped to the policy's maximum (None: no expiry)."""
        ttl = asked if asked is not None else self.ttl_s if self.ttl_s is not None else default
        if self.max_ttl_s is not None and (ttl is None or ttl > self.max_ttl_s):
            return self.max_ttl_s
        return ttl


class Policies:
    """The configured policies, in order."""

    def __init__(self, settings: Iterable[PolicySettings]) -> None:
        self.policies: Sequence[Policy] = tuple(Policy.of(s) for s in settings)
        self.header_names = frozenset(name for p in self.policies for name, _ in p.headers)

    def gather(self, head: Head) -> None:
        """The request's headers that policies are matched by, into `head.policy_headers`
        and its read headers (they key the fast path's plans). Sent twice: a 400, as which
        one a tenant meant is anyone's guess."""
        names = self.header_names
        found: dict[bytes, bytes] = {}
        for name, value in head.raw:
            if name in names:
                if name in found:
                    raise bad_request(f"the {name.decode()} header was sent more than once", "duplicate_policy_header")
                found[name] = value.strip()
                if not is_read(name):
                    head.read.append((name, value))
        head.policy_headers = found

    def match(self, head: Head, model: Any) -> Policy | None:
        for policy in self.policies:
            if policy.matches(head, model):
                return policy
        return None
