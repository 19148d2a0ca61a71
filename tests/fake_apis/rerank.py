"""Rerank (``POST /v1/rerank``, also ``/rerank`` and ``/v2/rerank``) for the fake upstream,
in the Cohere form LiteLLM's proxy answers with.

Request: ``{"model", "query", "documents": [str | {"text": ...} | {...}], "top_n"?,
"return_documents"?, "rank_fields"?}``. A document object without ``text`` is ranked by
the string values of its ``rank_fields`` (all its string values when none are named).

Answer: ``{"id": <fresh uuid-shaped id>, "results": [{"index", "relevance_score",
"document": {"text"}}], "meta": {"api_version": {"version": "1"}, "billed_units":
{"search_units": 1}, "tokens": {"input_tokens", "output_tokens": 0}}}``, the results
best first (ties by index), cut to ``top_n``; ``document`` only when ``return_documents``
is not false (LiteLLM's default is true). The score, ``relevance_score(query, text)``, is
deterministic and in [0.05, 1.0): mostly the share of the query's words found in the
document, plus a small jitter from a hash of both, so rankings are predictable.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from tests.fake_apis.common import ApiError, Full, Stream, ids, json_reply, require_model, word_count

MAX_DOCUMENTS = 10_000
_WORD_RE = re.compile(r"\w+")


def relevance_score(query: str, text: str) -> float:
    wanted = set(_WORD_RE.findall(query.lower()))
    found = set(_WORD_RE.findall(text.lower()))
    overlap = len(wanted & found) / len(wanted) if wanted else 0.0
    digest = hashlib.sha256(query.encode() + b"\x00" + text.encode()).digest()
    jitter = int.from_bytes(digest[:4], "big") / 2**32
    return round(0.05 + 0.9 * overlap + 0.0499 * jitter, 6)


def reply(body: dict[str, Any], fixed_id: str | None) -> Full:
    require_model(body)
    query = body.get("query")
    if not isinstance(query, str) or not query:
        raise ApiError(400, "Missing required parameter: 'query'.", param="query", code="missing_required_parameter")
    documents = body.get("documents")
    if not isinstance(documents, list) or not documents:
        message = "'documents' must be a non-empty array"
        raise ApiError(400, message, param="documents", code="missing_required_parameter")
    if len(documents) > MAX_DOCUMENTS:
        message = f"'documents' holds at most {MAX_DOCUMENTS} items"
        raise ApiError(400, message, param="documents", code="invalid_value")
    top_n = body.get("top_n")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise ApiError(400, "Invalid 'top_n': expected a positive integer.", param="top_n", code="invalid_value")
    fields = body.get("rank_fields")
    if fields is not None and not (isinstance(fields, list) and all(isinstance(f, str) for f in fields)):
        raise ApiError(400, "Invalid 'rank_fields': expected an array of strings.", param="rank_fields")
    texts = [_text(doc, fields, i) for i, doc in enumerate(documents)]
    scored = sorted(((relevance_score(query, t), i) for i, t in enumerate(texts)), key=lambda p: (-p[0], p[1]))
    with_documents = body.get("return_documents") is not False
    results = []
    for score, index in scored[:top_n]:
        result: dict[str, Any] = {"index": index, "relevance_score": score}
        if with_documents:
            result["document"] = {"text": texts[index]}
        results.append(result)
    tokens = word_count(query) * len(texts) + sum(map(word_count, texts))
    meta = {
        "api_version": {"version": "1"},
        "billed_units": {"search_units": 1},
        "tokens": {"input_tokens": tokens, "output_tokens": 0},
    }
    return json_reply({"id": fixed_id or _uuid(next(ids)), "results": results, "meta": meta})


def bad_reply(mode: str, answer: Full | Stream) -> Full | None:
    """``x-fake-bad: shape``: the answer without its ``results``."""
    if mode != "shape" or not isinstance(answer, Full) or answer.status != 200:
        return None
    document = orjson.loads(answer.body)
    document.pop("results", None)
    return json_reply(document)


def _text(doc: Any, fields: list[str] | None, index: int) -> str:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, dict):
        if isinstance(doc.get("text"), str):
            return str(doc["text"])
        values = [doc.get(f) for f in fields] if fields else list(doc.values())
        strings = [v for v in values if isinstance(v, str)]
        if strings:
            return " ".join(strings)
    message = f"Invalid 'documents[{index}]': expected a string or an object with text."
    raise ApiError(400, message, param=f"documents[{index}]", code="invalid_value")


def _uuid(n: int) -> str:
    """A fresh id shaped like Cohere's (a UUID)."""
    return f"00000000-0000-4000-8000-{n:012d}"
