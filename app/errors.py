"""Errors the proxy answers itself, always in the OpenAI shape."""

from __future__ import annotations

import orjson


class ProxyError(Exception):
    def __init__(self, status: int, message: str, type: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code)


def error_body(message: str, type: str, code: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "code": code}})


def bad_request(message: str, code: str = "invalid_request") -> ProxyError:
    return ProxyError(400, message, "invalid_request_error", code)


def too_large(limit: int) -> ProxyError:
    return ProxyError(413, f"request body exceeds the {limit} byte limit", "invalid_request_error", "request_too_large")


def upstream_unreachable(detail: str) -> ProxyError:
    return ProxyError(502, f"upstream unreachable: {detail}", "upstream_error", "upstream_unreachable")


def upstream_timeout() -> ProxyError:
    return ProxyError(504, "upstream timed out", "upstream_error", "upstream_timeout")


def upstream_broken(detail: str) -> ProxyError:
    return ProxyError(502, f"upstream response broken: {detail}", "upstream_error", "upstream_protocol_error")


def not_cached() -> ProxyError:
    return ProxyError(504, "no cached response and only-if-cached was requested", "cache_miss", "only_if_cached")


def body_timeout(seconds: float) -> ProxyError:
    return ProxyError(
        408, f"the request body did not arrive within {seconds:g} s", "invalid_request_error", "request_timeout"
    )


def headers_too_large(detail: str) -> ProxyError:
    return ProxyError(431, f"request header fields too large: {detail}", "invalid_request_error", "headers_too_large")


def internal_error() -> ProxyError:
    return ProxyError(500, "llmcache failed to handle this request (see its log)", "server_error", "internal_error")
