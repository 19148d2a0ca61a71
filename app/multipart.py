"""multipart/form-data in memory: parse a body the proxy already holds, and rebuild one.

The body is bounded by `max_body_bytes` and already read, so parsing from bytes avoids
the spooled temporary files (blocking writes) of a streaming form parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import ProxyError, bad_request


@dataclass(slots=True)
class Part:
    name: str
    data: bytearray = field(default_factory=bytearray)
    filename: str | None = None
    content_type: str | None = None


def boundary_of(content_type: bytes) -> bytes | None:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        return None
    return options.get(b"boundary")


def parse_form(body: bytes, boundary: bytes) -> list[Part]:
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
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise bad_request("a multipart part has no name", "invalid_multipart")
        filename = options.get(b"filename")
        ctype = headers.get(b"content-type")
        parts.append(
            Part(
                name.decode("utf-8", "replace"),
                filename=None if filename is None else filename.decode("utf-8", "replace"),
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
    """(body, content-type with boundary) for the given parts, via httpx's encoder."""
    data: dict[str, list[str]] = {}
    files: list[tuple[str, tuple[str | None, bytes, str | None]]] = []
    for part in parts:
        if part.filename is None:
            data.setdefault(part.name, []).append(part.data.decode("utf-8", "replace"))
        else:
            files.append((part.name, (part.filename, bytes(part.data), part.content_type)))
    request = httpx.Request("POST", "http://form.invalid", data=data, files=files)  # type: ignore[arg-type]
    return request.read(), request.headers["content-type"].encode()
