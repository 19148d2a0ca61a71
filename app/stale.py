"""Stale answers (RFC 5861): an entry past its TTL that may still answer, and when.

Two windows, each in seconds past an entry's expiry (`Entry.expires_at`, which stays
the logical expiry):

- **while-revalidate**: the expired entry answers at once (`x-cache-status: stale`,
  `warning: 110`) and one background refresh through the single flight replaces it.
- **if-error**: the upstream is called as on a miss; if it fails (5xx, 429, timeout,
  unreachable) before a byte reached the client, the expired entry answers instead
  (`warning: 111`), else the upstream's answer does.

The windows come from the request (`max-stale`, `stale-if-error`), else the tenant's
policy, else `cache.stale`. Tiers keep an entry for its TTL plus the larger configured
window (`keep_s`); a request can narrow or widen what it accepts, not what is kept.

A stale answer is an answer from the cache: `/cache/stats` counts it under `stale`, and
its `hit_rate` counts it with the hits (the client got a stored answer, not the upstream's).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from app.asgi import Receive, Send
from app.codec import Entry
from app.exact_json import dumps, parse_object
from app.respond import follows_live
from app.types import CacheStatus

if TYPE_CHECKING:
    from app.calls.base import Call
    from app.coalesce import Flight
    from app.respond import Responder

STALE_WARNING = b'110 - "Response is Stale"'
REVALIDATION_FAILED = b'111 - "Revalidation Failed"'
# Upstream answers that stale-if-error hides: it is down, overloaded or throttling.
TOO_MANY_REQUESTS = 429
# The errors llmcache answers for an upstream that failed (502 unreachable or broken, 504
# timed out), as opposed to its own (500) or a client's (4xx).
UPSTREAM_ERROR = "upstream_error"


@dataclass(frozen=True, slots=True)
class StaleWindows:
    if_error_s: float = 0.0
    while_revalidate_s: float = 0.0
    # How long tiers keep an entry past its TTL: the configured windows, never a request's.
    keep_s: float = 0.0

    @classmethod
    def configured(cls, if_error_s: float, while_revalidate_s: float) -> StaleWindows:
        return cls(if_error_s, while_revalidate_s, max(if_error_s, while_revalidate_s))

    @property
    def serve_s(self) -> float:
        """How far past its expiry an entry is worth reading at all (0: off)."""
        return max(self.if_error_s, self.while_revalidate_s)

    def overridden(self, if_error_s: float | None, while_revalidate_s: float | None) -> StaleWindows:
        """Configured windows over these (a tenant's policy over the global ones): None keeps a
        window as it is; what tiers keep follows."""
        if if_error_s is None and while_revalidate_s is None:
            return self
        return StaleWindows.configured(
            self.if_error_s if if_error_s is None else if_error_s,
            self.while_revalidate_s if while_revalidate_s is None else while_revalidate_s,
        )

    def requested(self, if_error_s: float | None, while_revalidate_s: float | None) -> StaleWindows:
        """A request's windows over these: what it accepts changes, what is kept does not."""
        if if_error_s is None and while_revalidate_s is None:
            return self
        return StaleWindows(
            self.if_error_s if if_error_s is None else if_error_s,
            self.while_revalidate_s if while_revalidate_s is None else while_revalidate_s,
            self.keep_s,
        )


OFF = StaleWindows()


class Use(Enum):
    """What an entry found by the lookup is good for."""

    FRESH = "fresh"  # within its TTL: a hit
    REVALIDATE = "revalidate"  # answer it now, refresh it behind
    IF_ERROR = "if_error"  # call the upstream; answer it if that fails
    NONE = "none"  # too stale for this call: a miss


def use_of(entry: Entry, now: float, windows: StaleWindows) -> Use:
    """Within a window means less than that many seconds past the expiry (tiers drop the
    entry at expiry + keep_s, so a window of N serves up to, not at, N seconds stale)."""
    expires_at = entry.expires_at
    if expires_at is None or now < expires_at:
        return Use.FRESH
    staleness = now - expires_at
    if staleness < windows.while_revalidate_s:
        return Use.REVALIDATE
    if staleness < windows.if_error_s:
        return Use.IF_ERROR
    return Use.NONE


def upstream_failed(flight: Flight) -> bool:
    """Whether a finished flight's upstream failed in a way a stale answer may hide."""
    if flight.error is not None:
        return flight.error.type == UPSTREAM_ERROR
    outcome = flight.outcome
    if outcome is None:
        return False
    return outcome.cut or outcome.status >= 500 or outcome.status == TOO_MANY_REQUESTS


def unstreamed(call: Call) -> Call:
    """The call a refresh sends upstream: whole, not streamed (no client reads it live,
    and a whole answer is what is stored either way)."""
    if not call.stream:
        return call
    payload: dict[str, Any] = parse_object(call.body)
    payload.pop("stream", None)
    payload.pop("stream_options", None)
    return replace(call, body=dumps(payload), stream=False, include_usage=False)


async def answer(
    respond: Responder,
    call: Call,
    flight: Flight,
    receive: Receive,
    send: Send,
    status: CacheStatus,
    fallback: Entry,
    follower: bool,
) -> None:
    """Answer `call` from `flight`, or with `fallback` if the upstream failed before a byte
    of its answer could reach this client (a live stream's status comes before its body)."""
    live = follows_live(call, flight) if follower else call.stream
    if live:
        await flight.wait_started()
    else:
        await flight.wait_finished()
    if flight.finished and upstream_failed(flight):
        if follower:
            flight.leave()
        await respond.entry(call, send, fallback, CacheStatus.STALE, warning=REVALIDATION_FAILED)
    elif follower:
        await respond.follow(call, flight, receive, send, status)
    elif call.stream:
        await respond.live(call, flight, receive, send, status)
    else:
        await respond.outcome(call, flight, send, status)
