"""What counts as a complete success of each call type: only that is ever stored.

A 2xx status says little about the body behind it: an upstream (or a gateway in front of
it) can answer 200 with an error document, an HTML error page, or a body cut off where
the connection dropped without a Content-Length. Each would be served to every later
caller as the answer. So a body is stored only when it parses as the call type's
answer; anything else is passed through to its one caller and forgotten.
"""

from __future__ import annotations

from typing import Any, Callable

Shape = Callable[[dict[str, Any]], bool]


def _items(field: str, member: str, kinds: type | tuple[type, ...]) -> Shape:
    """A non-empty list `field` of objects, each with `member` of one of `kinds`: the parts
    a replay (stream or batch) reads from a stored answer."""

    def check(document: dict[str, Any]) -> bool:
        items = document.get(field)
        return (
            isinstance(items, list)
            and bool(items)
            and all(isinstance(item, dict) and isinstance(item.get(member), kinds) for item in items)
        )

    return check


def _has_text(document: dict[str, Any]) -> bool:
    return isinstance(document.get("text"), str)


SHAPES: dict[str, Shape] = {
    "chat_completions": _items("choices", "message", dict),
    "completions": _items("choices", "text", str),
    "embeddings": _items("data", "embedding", (list, str)),  # floats, or base64
    "transcriptions": _has_text,
    "translations": _has_text,
}
# Plain-text formats an audio call may answer in (`response_format` text, srt, vtt).
TEXT_TYPES = ("text/plain", "text/vtt", "application/x-subrip", "text/srt")


def complete(call_type: str, content_type: str, document: dict[str, Any] | None) -> bool:
    """Whether a 2xx body is a whole answer of `call_type`. `document` is the body as a
    JSON object (None when it is not one)."""
    if document is None:
        # Only an audio call answers in plain text; its length cannot be checked.
        return call_type in ("transcriptions", "translations") and content_type.startswith(TEXT_TYPES)
    if "error" in document:
        return False
    shape = SHAPES.get(call_type)
    return shape is None or shape(document)
