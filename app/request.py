"""What the cached routes need from a request: its head, gathered in one pass, and its body.

The head's `read` lists, as sent and in order, every header the cached routes read
before their cache lookup: the `x-cache-*` controls, the credential headers, the body's
type and length, `Cache-Control`, and the `anthropic-*` headers (a call type's
`key_headers` must be among them), and the headers tenant policies are matched by
(added by `Policies.gather`, `app/policy.py`). With the path, query and body, those are
all a request's lookup can depend on (`app/memo.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app import keys
from app.asgi import Receive, Scope
from app.errors import bad_request
from app.types import Headers

if TYPE_CHECKING:
    from app.memo import MemoKey

_CREDENTIALS = frozenset(keys.CREDENTIAL_HEADERS)
READ_PREFIXES = (b"x-cache-", b"anthropic-")
READ_HEADERS = _CREDENTIALS | {b"content-type", b"content-length", b"cache-control"}


def is_read(name: bytes) -> bool:
    """Whether the cached routes read this request header (see the module docstring)."""
    return name in READ_HEADERS or name.startswith(READ_PREFIXES)


@dataclass(slots=True)
class Head:
    raw: Headers
    controls: dict[str, str]
    query: str = ""
    credentials: Sequence[tuple[bytes, bytes]] = ()
    authorization: str | None = None
    content_type: bytes | None = None
    content_length: int | None = None
    cache_control: str | None = None
    read: list[tuple[bytes, bytes]] = field(default_factory=list)
    memo_key: MemoKey | None = None  # set by the pipeline once the body is read
    policy_headers: dict[bytes, bytes] | None = None  # those policies match by (`app/policy.py`)
    # Set by /cache/explain: the canonical form of every key made for this request, in order.
    canonicals: list[list[Any]] | None = None


def read_head(scope: Scope) -> Head:
    raw: Headers = scope["headers"]
    query: bytes = scope.get("query_string", b"")
    head = Head(raw, {}, query.decode("latin-1") if query else "")
    read = head.read
    credentials: list[tuple[bytes, bytes]] | None = None
    for name, value in raw:
        if name.startswith(b"x-cache-"):
            head.controls[name[8:].decode("latin-1")] = value.decode("latin-1")
            read.append((name, value))
        elif name in _CREDENTIALS:
            read.append((name, value))
            if credentials is None:  # the usual case: one credential header
                credentials = head.credentials = [(name, value)]
            elif name in keys.SINGLE_HEADERS and any(n == name for n, _ in credentials):
                raise bad_request(f"the {name.decode()} header was sent more than once", "duplicate_credential_header")
            else:
                credentials.append((name, value))
            if name == b"authorization":
                head.authorization = value.decode("latin-1")
        elif name == b"content-type":
            head.content_type = value
            read.append((name, value))
        elif name == b"content-length":
            read.append((name, value))
            try:
                head.content_length = int(value)
            except ValueError:
                raise bad_request("invalid content-length header") from None
        elif name == b"cache-control":
            head.cache_control = value.decode("latin-1")
            read.append((name, value))
        elif name.startswith(b"anthropic-"):
            read.append((name, value))
    return head


@dataclass(slots=True)
class Request:
    scope: Scope
    receive: Receive
    head: Head
    body: bytes

    @property
    def path(self) -> str:
        path: str = self.scope["path"]
        return path
