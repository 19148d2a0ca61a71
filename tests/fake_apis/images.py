"""OpenAI's Images API for the fake upstream: ``POST /v1/images/generations`` (JSON),
``/v1/images/edits`` and ``/v1/images/variations`` (multipart: the image file(s) as
``image`` or ``image[]``, an optional ``mask`` file, and the other parameters as fields).

Every answer is ``{"created", "data": [...]}`` with one entry per image (``n``, 1 to 10),
each ``{"url": ...}`` or ``{"b64_json": ...}`` by ``response_format`` (default "url";
"b64_json" for a model whose name starts with "gpt-image", which also get ``usage``,
``background``, ``output_format``, ``quality`` and ``size`` like OpenAI's). dall-e-3
generations carry a ``revised_prompt`` and take only ``n`` = 1.

The picture is a small deterministic PNG (8x8 RGB, whatever ``size`` asks for): image i
of a call is a function of the endpoint, i and the parameters that shape it (model,
prompt, size, quality, style, ...; for edits and variations the bytes of every image and
of the mask), never of ``n``, ``response_format`` or ``user``. Its 16-hex-digit seed is
part of the URL, ``http://<Host of the request>/_img/img_<fresh id>-<seed>.png``, which
the fake serves (GET), so a URL is new on every call while the picture behind it and the
``b64_json`` of the same request are the same bytes. Streaming (``stream: true``) is
refused with a 400.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import struct
import zlib
from typing import Any
from urllib.parse import quote

import orjson

from tests.fake_apis.common import CREATED, ApiError, Full, form_int, ids, json_reply, word_count

ENDPOINTS = ("generations", "edits", "variations")
PNG_SIDE = 8
MAX_IMAGES = 16  # input images of one edit
_SIZE_RE = re.compile(r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")
_SERVED_RE = re.compile(r"-([0-9a-f]{16})\.png$")
# Request fields that do not change the pictures.
_NOT_CONTENT = frozenset({"n", "response_format", "user", "safety_identifier", "stream", "partial_images"})
_QUALITY = {"auto": "medium", "standard": "medium", "hd": "high"}  # to ImagesResponse's literals
_OUTPUT_FORMATS = ("png", "webp", "jpeg")


def reply(
    endpoint: str, fields: dict[str, Any], files: dict[str, list[bytes]] | None, origin: str, fixed_id: str | None
) -> Full:
    """The answer to one call. `fields`: the JSON body or the form's fields; `files`: the
    form's files (None for a JSON body); `origin`: scheme://host the URLs point at."""
    if endpoint not in ENDPOINTS:
        raise ApiError(404, f"Invalid URL (POST /v1/images/{endpoint})", code="not_found")
    if endpoint != "generations" and files is None:
        message = "Invalid Content-Type header (expected multipart/form-data with the image file)."
        raise ApiError(400, message, param="image", code="invalid_value")
    if fields.get("stream") in (True, "true"):
        raise ApiError(400, "The fake upstream does not stream images.", param="stream", code="unsupported_value")
    default_model = "dall-e-2"
    model = fields.get("model") or default_model
    if not isinstance(model, str):
        raise ApiError(400, "Invalid 'model': expected a string.", param="model")
    prompt = fields.get("prompt")
    if endpoint != "variations" and (not isinstance(prompt, str) or not prompt):
        raise ApiError(400, "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
    n = form_int(fields, "n", 1, 10, 1)
    if model == "dall-e-3" and n != 1:
        raise ApiError(400, "Invalid 'n': dall-e-3 only supports n=1.", param="n", code="invalid_value")
    size = fields.get("size") or "auto"
    if size != "auto" and not (isinstance(size, str) and _SIZE_RE.match(size)):
        raise ApiError(400, f"Invalid 'size': {size!r}.", param="size", code="invalid_value")
    gpt_image = model.startswith("gpt-image")
    fmt = fields.get("response_format") or ("b64_json" if gpt_image else "url")
    if fmt not in ("url", "b64_json"):
        message = f"Invalid 'response_format': {fmt!r}; expected 'url' or 'b64_json'."
        raise ApiError(400, message, param="response_format", code="invalid_value")
    images = _input_images(endpoint, files)
    mask = files.get("mask") if files else None
    content = {k: v for k, v in fields.items() if k not in _NOT_CONTENT}
    content.update(endpoint=endpoint, model=model, size=size)
    if images:
        content["image"] = [hashlib.sha256(b).hexdigest() for b in images]
    if mask:
        content["mask"] = hashlib.sha256(mask[-1]).hexdigest()
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS, default=str)
    data = []
    for index in range(n):
        seed = hashlib.sha256(canonical + b"\x00%d" % index).hexdigest()[:16]
        if fmt == "b64_json":
            entry: dict[str, Any] = {"b64_json": base64.b64encode(png(seed)).decode()}
        else:
            name = f"{quote(fixed_id, safe='')}-{index}" if fixed_id else f"img_{next(ids)}"
            entry = {"url": f"{origin}/_img/{name}-{seed}.png"}
        if model == "dall-e-3":
            entry["revised_prompt"] = f"A deterministic picture of: {prompt}"
        data.append(entry)
    document: dict[str, Any] = {"created": CREATED, "data": data}
    if gpt_image:
        document.update(_gpt_image_fields(fields, size, prompt or "", len(images), n))
    return json_reply(document)


def served(path: str) -> bytes | None:
    """The PNG behind a URL this module handed out (``/_img/<name>-<seed>.png``), or None."""
    match = _SERVED_RE.search(path)
    return png(match.group(1)) if match else None


@functools.lru_cache(maxsize=4096)
def png(seed: str) -> bytes:
    """A valid 8x8 RGB PNG whose pixels are expanded from the 16-hex-digit `seed`."""
    pixels = hashlib.shake_256(seed.encode()).digest(PNG_SIDE * PNG_SIDE * 3)
    row = PNG_SIDE * 3
    raw = b"".join(b"\x00" + pixels[y * row : (y + 1) * row] for y in range(PNG_SIDE))
    header = struct.pack(">IIBBBBB", PNG_SIDE, PNG_SIDE, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")
    )


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _input_images(endpoint: str, files: dict[str, list[bytes]] | None) -> list[bytes]:
    if endpoint == "generations":
        return []
    images = [*(files or {}).get("image", []), *(files or {}).get("image[]", [])]
    if not images:
        raise ApiError(400, "Missing required parameter: 'image'.", param="image", code="missing_required_parameter")
    if endpoint == "variations" and len(images) > 1:
        raise ApiError(400, "Invalid 'image': a variation takes one image.", param="image", code="invalid_value")
    if len(images) > MAX_IMAGES:
        message = f"Invalid 'image': at most {MAX_IMAGES} images."
        raise ApiError(400, message, param="image", code="invalid_value")
    if any(not image for image in images):
        raise ApiError(400, "Invalid 'image': the file is empty.", param="image", code="invalid_value")
    return images


def _gpt_image_fields(fields: dict[str, Any], size: str, prompt: str, images: int, n: int) -> dict[str, Any]:
    quality = fields.get("quality") or "auto"
    if not isinstance(quality, str):
        raise ApiError(400, "Invalid 'quality': expected a string.", param="quality", code="invalid_value")
    quality = _QUALITY.get(quality, quality)
    output_format = fields.get("output_format") or "png"
    if output_format not in _OUTPUT_FORMATS:  # the bytes are PNG whatever is asked
        output_format = "png"
    text_tokens, image_tokens, output_tokens = word_count(prompt), 194 * images, 272 * n
    return {
        "background": "transparent" if fields.get("background") == "transparent" else "opaque",
        "output_format": output_format,
        "quality": quality,
        "size": "1024x1024" if size == "auto" else size,
        "usage": {
            "input_tokens": text_tokens + image_tokens,
            "input_tokens_details": {"image_tokens": image_tokens, "text_tokens": text_tokens},
            "output_tokens": output_tokens,
            "output_tokens_details": {"image_tokens": output_tokens, "text_tokens": 0},
            "total_tokens": text_tokens + image_tokens + output_tokens,
        },
    }
