"""What counts as a complete success: only that is ever stored.

A 2xx status says little about the body behind it: an upstream (or a gateway in front of
it) can answer 200 with an error document, an HTML error page, or a body cut off where
the connection dropped without a Content-Length. Each would be served to every later
caller as the answer. So a body is stored only when it parses as its call type's answer
(each handler's `complete`, built from these checks); anything else is passed through to
its one caller and forgotten.
"""

from __future__ import annotations

from typing import Any

# Plain-text formats an audio call may answer in (`response_format` text, srt, vtt).
TEXT_TYPES = ("text/plain", "text/vtt", "application/x-subrip", "text/srt")


def has_items(document: dict[str, Any] | None, field: str, member: str, kinds: type | tuple[type, ...]) -> bool:
    """`document` is an answer, not an error, whose `field` is a non-empty list of objects
    each with `member` of one of `kinds`: the parts a replay (stream or batch) reads."""
    if document is None or "error" in document:
        return False
    items = document.get(field)
    if not isinstance(items, list) or not items:
        return False
    for item in items:  # a loop, not all(...): no generator on every upstream answer
        if not isinstance(item, dict) or not isinstance(item.get(member), kinds):
            return False
    return True


def is_text_answer(content_type: str, document: dict[str, Any] | None) -> bool:
    """A transcription-style answer: JSON with a `text`, or plain text (whose length
    cannot be checked)."""
    if document is None:
        return content_type.startswith(TEXT_TYPES)
    return "error" not in document and isinstance(document.get("text"), str)
