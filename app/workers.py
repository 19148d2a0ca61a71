"""Several serving processes on one port, each with a listening socket of its own.

uvicorn's own `--workers` shares one socket: whichever worker wakes first accepts a whole
burst of connections, so under load one worker can end up with most of them. Here every
worker binds the port with SO_REUSEPORT and the kernel spreads new connections across
the workers' accept queues. The supervisor restarts a worker that dies, and passes
SIGINT/SIGTERM on, so each worker shuts down gracefully (its write queues drain).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger("llmcache.workers")
RESTART_CHECK_S = 0.5


def listen(host: str, port: int, reuse_port: bool = True) -> socket.socket:
    """A socket bound to the address (OSError if it cannot be)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    import uvicorn

    from app.protocol import protocol_class
    from app.server import app_from_env

    sock = listen(host, port)
    app = app_from_env()
    config = uvicorn.Config(app, host=host, port=port, http=protocol_class(app.settings.server), **options)
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(count: int, host: str, port: int, options: dict[str, Any]) -> None:
    """Serve with `count` processes until SIGINT/SIGTERM; the config comes from the env."""
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start() -> BaseProcess:
        process = context.Process(target=_worker, args=(host, port, options), name="llmcache-worker")
        process.start()
        return process

    def stop(signum: int, _: Any) -> None:
        stopping.set()

    # Bind once in the supervisor first: a port in use fails here, loudly, not per worker.
    listen(host, port).close()
    workers = [start() for _ in range(count)]
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    log.info("llmcache serving on %s:%s with %d workers", host, port, count)
    while not stopping.wait(RESTART_CHECK_S):
        for index, process in enumerate(workers):
            if not process.is_alive():
                log.warning("worker %s exited with %s; starting a new one", process.pid, process.exitcode)
                workers[index] = start()
    for process in workers:
        process.terminate()  # SIGTERM: uvicorn shuts the worker down gracefully
    for process in workers:
        process.join(30)
        if process.is_alive():
            process.kill()
