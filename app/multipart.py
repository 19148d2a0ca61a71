"""multipart/form-data in memory: parse a body the proxy already holds, and rebuild one.

The body is bounded by `max_body_bytes` and already read, so parsing from bytes avoids
the spooled temporary files (blocking writes) of a streaming form parser. The number of
parts is bounded too: a body of empty parts costs far more to parse than its size says.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx
from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import ProxyError, bad_request

MAX_PARTS = 256
CONTROL_FIELD = "cache"
# python-multipart cuts a filename that looks like a Windows path to its last segment (an
# old browsers' workaround): the key takes the filename as sent.
_FILENAME = re.compile(rb'(?:^|;)\s*filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', re.IGNORECASE)


@dataclass(slots=True)
class Part:
    name: str
    data: bytearray = field(default_factory=bytearray)
    filename: str | None = None
    content_type: str | None = None

    def key_value(self) -> Any:
        """This part as key material: exact bytes, never a lossy decoding of them."""
        data = bytes(self.data)
        if self.filename is not None:
            return {"file": file_digest(data), "filename": self.filename, "content_type": self.content_type}
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return {"bytes": data.hex(), "content_type": self.content_type}
        return text if self.content_type is None else {"text": text, "content_type": self.content_type}


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(slots=True)
class Form:
    parts: list[Part]

    def params(self) -> dict[str, Any]:
        """Key material: every field but `cache`; a repeated field keeps all values in order."""
        params: dict[str, list[Any]] = {}
        for part in self.parts:
            if part.name != CONTROL_FIELD:
                params.setdefault(part.name, []).append(part.key_value())
        return {name: values[0] if len(values) == 1 else values for name, values in params.items()}

    def text(self, name: str) -> str | None:
        """The last text field `name`, decoded (None when absent, a file, or not UTF-8)."""
        for part in reversed(self.parts):
            if part.name == name and part.filename is None:
                try:
                    return part.data.decode("utf-8")
                except UnicodeDecodeError:
                    return None
        return None

    def without(self, name: str) -> list[Part]:
        return [p for p in self.parts if p.name != name]


def boundary_of(content_type: bytes) -> bytes | None:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        return None
    return options.get(b"boundary")


def form_of(body: bytes, content_type: bytes, max_parts: int = MAX_PARTS) -> Form:
    boundary = boundary_of(content_type)
    if not boundary:
        raise bad_request("this route takes multipart/form-data with a boundary", "invalid_multipart")
    return Form(parse_form(body, boundary, max_parts))


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request(f"a multipart part's {what} is not UTF-8", "invalid_multipart") from None


def parse_form(body: bytes, boundary: bytes, max_parts: int = MAX_PARTS) -> list[Part]:
    parts: list[Part] = []
    header_name = bytearray()
    header_value = bytearray()
    headers: dict[bytes, bytes] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_name).lower()] = bytes(header_value)
        header_name.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        if len(parts) >= max_parts:
            raise bad_request(f"a multipart body may have at most {max_parts} parts", "invalid_multipart")
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise bad_request("a multipart part has no name", "invalid_multipart")
        filename = options.get(b"filename")
        if filename is not None:
            sent = _FILENAME.search(headers.get(b"content-disposition", b""))
            if sent is not None:
                filename = sent.group(1) if sent.group(1) is not None else sent.group(2)
        ctype = headers.get(b"content-type")
        parts.append(
            Part(
                _text(name, "name"),
                filename=None if filename is None else _text(filename, "filename"),
                content_type=None if ctype is None else ctype.decode("latin-1"),
            )
        )
        headers.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data.extend(data[start:end])

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except ProxyError:
        raise
    except Exception as exc:  # python-multipart raises several unrelated types
        raise bad_request(f"malformed multipart body: {exc}", "invalid_multipart") from None
    return parts


def build_form(parts: list[Part]) -> tuple[bytes, bytes]:
    """(body, content-type with boundary) for the given parts, via httpx's encoder.

    Field values go as the bytes they arrived as, so the upstream gets the request that
    was keyed.
    """
    if not parts:  # httpx writes no form at all for no fields
        boundary = secrets.token_hex(16)
        return f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}".encode()
    data: dict[str, list[bytes]] = {}
    files: list[tuple[str, tuple[str | None, bytes, str | None]]] = []
    for part in parts:
        if part.filename is None:
            data.setdefault(part.name, []).append(bytes(part.data))
        else:
            files.append((part.name, (part.filename, bytes(part.data), part.content_type)))
    request = httpx.Request("POST", "http://form.invalid", data=data, files=files)
    return request.read(), request.headers["content-type"].encode()
