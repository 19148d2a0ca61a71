"""What the slow path decided for a request, remembered for the next identical one.

Clients repeat requests byte for byte far more often than not, and everything the
pipeline decides before its cache lookup — parse the body, merge the controls, route the
model, scope the credential, build and hash the canonical key — is a pure function of
the request's path, query, body and the few headers it reads (`request.READ_HEADERS`,
and those a tenant policy is matched by) under one process's settings, which never
change while it serves. So the pipeline records that decision (a `Plan`) when it hands
a call to its lookup, under the request's `MemoKey`, and a later request with the same
`MemoKey` goes straight to the lookup.

What is remembered holds nothing that changes: no entry, no time, no tier state. Entries
are looked up, expiry and `s-maxage` are checked, on every request. Only calls whose
lookup a hit answers as stored are remembered (a keyed call that is not a refresh and
not a stream replayed from an answer); every other request takes the whole pipeline.

A `MemoKey` compares exactly: path, query and the headers read as sent, in order (so a
duplicated credential header is a different request), and the SHA-256 of the body —
memory per plan stays small whatever the body's size. Bodies too large to parse on the
loop, and heads whose read headers are unusually large, are not remembered at all.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING, NamedTuple

from app.asgi import OFFLOAD_BYTES
from app.types import CacheKey, CallType

if TYPE_CHECKING:
    from app.policy import Policy

# Plans kept (first in, first out): a process serves far fewer distinct repeated requests.
MAX_PLANS = 4096
# The read headers, path and query of a request whose plan is kept, at most: a plan
# holds them, so memory stays bounded by MAX_PLANS × this.
MAX_HEAD_BYTES = 2048

MemoKey = tuple[str, bytes, tuple[tuple[bytes, bytes], ...], bytes]


class Plan(NamedTuple):
    """What a cacheable call's hit needs, as the slow path decided it. (A tuple: made on
    every first sight of a request, a miss's path, where a frozen dataclass costs more.)"""

    call_type: CallType
    model: str  # the metric label's source ("" when the body's model is not a string)
    key: CacheKey
    max_age_s: float | None  # s-maxage / max-age
    policy: Policy | None = None  # named in the hit's `x-cache-policy`


def memo_key(path: str, query: bytes, read: list[tuple[bytes, bytes]], body: bytes) -> MemoKey | None:
    if len(body) >= OFFLOAD_BYTES:
        return None
    return (path, query, tuple(read), hashlib.sha256(body).digest())


def _head_bytes(key: MemoKey) -> int:
    return len(key[0]) + len(key[1]) + sum([len(name) + len(value) for name, value in key[2]])


class Memo:
    def __init__(self, limit: int = MAX_PLANS) -> None:
        self.limit = limit
        # First in, first out; an OrderedDict pops its oldest in O(1) (a dict's first key
        # is found by skipping the slots its deletions left).
        self._plans: OrderedDict[MemoKey, Plan] = OrderedDict()

    def __len__(self) -> int:
        return len(self._plans)

    def get(self, key: MemoKey) -> Plan | None:
        return self._plans.get(key)

    def remember(self, key: MemoKey, plan: Plan) -> None:
        plans = self._plans
        if key in plans or _head_bytes(key) > MAX_HEAD_BYTES:
            return
        if len(plans) >= self.limit:
            plans.popitem(last=False)
        plans[key] = plan
