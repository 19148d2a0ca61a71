"""What the cached routes need from a request: its head, gathered in one pass, and its body."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app import keys
from app.asgi import Receive, Scope
from app.errors import bad_request
from app.types import Headers

_CREDENTIALS = frozenset(keys.CREDENTIAL_HEADERS)


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


def read_head(scope: Scope) -> Head:
    raw: Headers = scope["headers"]
    query: bytes = scope.get("query_string", b"")
    head = Head(raw, {}, query.decode("latin-1") if query else "")
    credentials: list[tuple[bytes, bytes]] | None = None
    for name, value in raw:
        if name.startswith(b"x-cache-"):
            head.controls[name[8:].decode("latin-1")] = value.decode("latin-1")
        elif name in _CREDENTIALS:
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
        elif name == b"content-length":
            try:
                head.content_length = int(value)
            except ValueError:
                raise bad_request("invalid content-length header") from None
        elif name == b"cache-control":
            head.cache_control = value.decode("latin-1")
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
