"""`llmcache serve | check-config | import-litellm`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from app.config import ConfigError, Settings, load_settings, redact, redact_url, tier_name

STARTUP_FAILED = 3  # uvicorn's own code for a server that did not start


class _Exit(Exception):
    """Stop the command with this exit code (the message is already printed)."""

    def __init__(self, code: int) -> None:
        self.code = code


def _settings(path: str | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise _Exit(2) from None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.metrics import prepare_multiprocess
    from app.protocol import protocol_class
    from app.server import CONFIG_ENV, create_app
    from app.workers import listen

    settings = _settings(args.config)
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    workers = args.workers or settings.server.workers
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: one line per upstream call is noise, and costly.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("azure").setLevel(logging.WARNING)  # the Azure SDK logs each request too
    options: dict[str, Any] = dict(loop="uvloop", access_log=False, log_level="info")
    # The address first, before any tier or client is opened: a port in use is a clear
    # error and a prompt exit, not a server stuck half-started.
    try:
        sock = listen(host, port, reuse_port=workers > 1)
    except OSError as exc:
        print(f"llmcache: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if workers > 1:
        from app.workers import run_workers

        sock.close()
        if args.config:
            os.environ[CONFIG_ENV] = os.path.abspath(args.config)
        prepare_multiprocess(Path(tempfile.gettempdir()) / f"llmcache-metrics-{os.getpid()}")
        run_workers(workers, host, port, options)
        return 0
    http = protocol_class(settings.server)
    config = uvicorn.Config(create_app(settings), host=host, port=port, http=http, **options)
    runner = uvicorn.Server(config)
    runner.run(sockets=[sock])
    return 0 if runner.started else STARTUP_FAILED


def describe(settings: Settings) -> str:
    lines = [f"upstream: {redact_url(settings.upstream.base_url)}", f"mode: {settings.cache.mode}", "tiers:"]
    for number, tier in enumerate(settings.cache.tiers, 1):
        details = {k: v for k, v in tier.model_dump().items() if k not in ("type", "name") and v is not None}
        shown = ", ".join(f"{k}={redact(k, v)}" for k, v in details.items())
        lines.append(f"  {number}. {tier_name(tier)} ({tier.type}): {shown}")
    encryption = settings.cache.encryption
    if encryption is not None:
        count = len(encryption.secrets())
        lines.append(f"encryption: AES-256-GCM, {count} key{'s' if count > 1 else ''} (the first for new writes)")
    if settings.tracing.enabled:
        lines.append(f"tracing: on, service {settings.tracing.service_name}, OTLP/HTTP as OTEL_* variables say")
    if settings.policies:
        lines.append(f"policies (the first that matches applies): {', '.join(p.name for p in settings.policies)}")
    return "\n".join(lines)


def _check_config(args: argparse.Namespace) -> int:
    settings = _settings(args.path)
    print(f"{args.path}: ok")
    print(describe(settings))
    return 0


def _import_litellm(args: argparse.Namespace) -> int:
    from app.litellm_import import LiteLLMImportError, convert_file, render

    try:
        conversion = convert_file(args.path)
    except LiteLLMImportError as exc:
        print(exc, file=sys.stderr)
        return 2
    for warning in conversion.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(render(conversion), end="")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="llmcache", description="OpenAI-compatible caching proxy")
    commands = root.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the proxy")
    serve.add_argument("--config", default=None, help="YAML config file (default: built-in defaults)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(run=_serve)
    check = commands.add_parser("check-config", help="validate a config file and print its tiers")
    check.add_argument("path")
    check.set_defaults(run=_check_config)
    migrate = commands.add_parser("import-litellm", help="print our config for a LiteLLM proxy config")
    migrate.add_argument("path")
    migrate.set_defaults(run=_import_litellm)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except _Exit as stop:
        return stop.code


if __name__ == "__main__":
    sys.exit(main())
