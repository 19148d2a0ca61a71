"""OpenAI's moderations (``POST /v1/moderations``) for the fake upstream.

Request: ``{"model"? (default "omni-moderation-latest"), "input": str | [str] | [parts]}``
where parts are ``{"type": "text", "text"}`` and ``{"type": "image_url", "image_url":
{"url"}}`` (image parts only for omni models, as at OpenAI). Answer: ``{"id": "modr-<n>",
"model", "results": [...]}``, one result per string, or a single one for an array of
parts, each ``{"flagged", "categories", "category_scores",
"category_applied_input_types"}`` over OpenAI's 13 categories (``CATEGORIES``).

Deterministic verdicts: a category is flagged when its name appears in the text as a
word (case-insensitive; "violence/graphic" flags "violence" too, since the name holds
it), and then scores 0.9 and up; otherwise its score is below 0.001, from a hash of the
model, the text and the category. Images never flag anything; they add "image" to the
applied input types of the categories that take images.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from tests.fake_apis.common import ApiError, Full, Stream, ids, json_reply

DEFAULT_MODEL = "omni-moderation-latest"
CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
IMAGE_CATEGORIES = frozenset(
    {"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence", "violence/graphic"}
)
_PATTERNS = {name: re.compile(r"(?<![a-z])" + re.escape(name) + r"(?![a-z])") for name in CATEGORIES}


def reply(body: dict[str, Any], fixed_id: str | None) -> Full:
    model = body.get("model") or DEFAULT_MODEL
    if not isinstance(model, str):
        raise ApiError(400, "Invalid 'model': expected a string.", param="model")
    items = _items(body.get("input"), model)
    results = [verdict(model, text, images) for text, images in items]
    return json_reply({"id": fixed_id or f"modr-{next(ids)}", "model": model, "results": results})


def bad_reply(mode: str, answer: Full | Stream) -> Full | None:
    """``x-fake-bad: shape``: the answer without its ``results``."""
    if mode != "shape" or not isinstance(answer, Full) or answer.status != 200:
        return None
    document = orjson.loads(answer.body)
    document.pop("results", None)
    return json_reply(document)


def verdict(model: str, text: str, images: int = 0) -> dict[str, Any]:
    """One result: for a text (and how many images came with it)."""
    lowered = text.lower()
    categories, scores, applied = {}, {}, {}
    for name in CATEGORIES:
        digest = hashlib.sha256(f"{model}\x00{text}\x00{name}".encode()).digest()
        small = round(int.from_bytes(digest[:4], "big") / 2**32 / 1000, 9)
        hit = bool(_PATTERNS[name].search(lowered))
        categories[name] = hit
        scores[name] = round(0.9 + small * 50, 9) if hit else small
        kinds = ["text"] if text or not images else []
        if images and name in IMAGE_CATEGORIES:
            kinds.append("image")
        applied[name] = kinds
    return {
        "flagged": any(categories.values()),
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": applied,
    }


def _items(raw: Any, model: str) -> list[tuple[str, int]]:
    """(text, image count) per result."""
    if isinstance(raw, str):
        return [(raw, 0)]
    if not isinstance(raw, list) or not raw:
        message = "Invalid 'input': expected a string, an array of strings or an array of content parts."
        raise ApiError(400, message, param="input", code="invalid_value")
    if all(isinstance(item, str) for item in raw):
        return [(item, 0) for item in raw]
    texts, images = [], 0
    for i, part in enumerate(raw):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and isinstance(part.get("image_url"), dict) and part["image_url"].get("url"):
            images += 1
        else:
            message = f"Invalid 'input[{i}]': expected a text or an image_url content part."
            raise ApiError(400, message, param=f"input[{i}]", code="invalid_value")
    if images and not model.startswith("omni-moderation"):
        message = f"Model {model} does not support image inputs."
        raise ApiError(400, message, param="input", code="invalid_value")
    return [(" ".join(texts), images)]
