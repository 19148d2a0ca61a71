"""The ASGI application: the cached routes on the raw hot path, the rest on FastAPI."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from app.admin import router
from app.asgi import Receive, Scope, Send, install_log_filter
from app.calls.registry import ROUTES
from app.config import Settings, load_settings
from app.errors import ProxyError, error_body, internal_error
from app.runtime import Runtime

log = logging.getLogger("llmcache")

OWN_PATHS = frozenset(("/health", "/ready", "/metrics"))
CONFIG_ENV = "LLMCACHE_CONFIG"


class LLMCache:
    """ASGI entry point. Tiers and the upstream transport open in the lifespan."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self._transport = transport
        self.runtime: Runtime | None = None
        self.api = FastAPI(lifespan=self._lifespan, docs_url=None, redoc_url=None, openapi_url=None)
        self.api.include_router(router)
        self.api.add_exception_handler(ProxyError, _proxy_error)  # type: ignore[arg-type]  # starlette types the handler loosely
        self.api.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]  # likewise
        self.api.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]  # likewise
        self.api.add_exception_handler(Exception, _unexpected_error)

    async def startup(self) -> Runtime:
        if self.runtime is None:
            install_log_filter()
            self.runtime = Runtime(self.settings, self._transport)
            self.runtime.start()
            self.api.state.runtime = self.runtime
            # Everything allocated so far lives as long as the process: keep it out of
            # the garbage collector's scans, which otherwise show up as latency spikes.
            gc.freeze()
        return self.runtime

    async def shutdown(self) -> None:
        if self.runtime is not None:
            await self.runtime.close()
            self.runtime = None

    @asynccontextmanager
    async def _lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.runtime is not None:
            path = scope["path"]
            if scope["method"] == "POST":
                handler = ROUTES.get(path)
                if handler is not None:
                    await self.runtime.handle(handler, scope, receive, send)
                    return
            if path not in OWN_PATHS and not path.startswith("/cache/"):
                await self.runtime.passthrough(scope, receive, send)
                return
        await self.api(scope, receive, send)


async def _proxy_error(request: Request, error: ProxyError) -> Response:
    return Response(error.body(), status_code=error.status, media_type="application/json")


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _http_error(request: Request, error: HTTPException) -> Response:
    """The framework's own errors (unknown path, wrong method) in the OpenAI shape too."""
    body = error_body(str(error.detail), "invalid_request_error", _HTTP_CODES.get(error.status_code, "http_error"))
    return Response(body, status_code=error.status_code, media_type="application/json", headers=error.headers)


async def _unexpected_error(request: Request, error: Exception) -> Response:
    log.error("unexpected error on %r", request.url.path, exc_info=error)
    return await _proxy_error(request, internal_error())


async def _validation_error(request: Request, error: RequestValidationError) -> Response:
    return Response(
        error_body(f"invalid request: {error.errors()}", "invalid_request_error", "invalid_request"),
        status_code=400,
        media_type="application/json",
    )


def create_app(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> LLMCache:
    """`transport`: the upstream's (tests inject httpx.ASGITransport or MockTransport)."""
    return LLMCache(settings, transport)


def app_from_env() -> LLMCache:
    """Factory for `uvicorn --factory` and worker processes: config path from the env."""
    return create_app(load_settings(os.environ.get(CONFIG_ENV)))
