"""Tags: names a request gives the entries it writes (`x-cache-tags: a,b`), so that one
admin call (`POST /cache/invalidate`) can drop every entry that carries any of them.

A tag is 1–64 characters of letters, digits, '.', '_', '-' and ':' — safe in a header, a
JSON string, a Redis key and an object path, and never a newline (the codec joins an
entry's tags with one).
"""

from __future__ import annotations

import re
from dataclasses import replace

from app.codec import Entry
from app.types import CacheKey

MAX_TAGS = 16  # on one entry
MAX_INVALIDATED_TAGS = 1000  # in one invalidation
MAX_TAG_LENGTH = 64
TAG_CHARACTERS = f"1-{MAX_TAG_LENGTH} characters of letters, digits, '.', '_', '-' or ':'"
TAG_RULE = f"{TAG_CHARACTERS}, at most {MAX_TAGS} tags"
_TAG = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")


def valid_tag(value: object) -> bool:
    return isinstance(value, str) and _TAG.match(value) is not None


def read_tags(value: object) -> tuple[str, ...] | None:
    """A header's comma list or a body's list of strings as tags (duplicates dropped, order
    kept); None if any is not a tag, or there are more than MAX_TAGS."""
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",")]
    elif isinstance(value, list) and all(isinstance(part, str) for part in value):
        parts = list(value)
    else:
        return None
    tags = tuple(dict.fromkeys(parts))
    if len(tags) > MAX_TAGS or not all(valid_tag(tag) for tag in tags):
        return None
    return tags


def with_tags(entries: dict[CacheKey, Entry], tags: tuple[str, ...]) -> dict[CacheKey, Entry]:
    """The entries a call writes, each carrying the call's tags."""
    return {key: replace(entry, tags=tags) for key, entry in entries.items()}
