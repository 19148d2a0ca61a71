"""Server processes for the benchmark: free ports, CPU pinning, readiness, teardown.

Every process starts in its own session (process group), so stopping it also stops
anything it forked; `Processes` is a context manager that stops every group it started
even when the benchmark fails half-way.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
STARTUP_DEADLINE_S = 30.0
STOP_GRACE_S = 5.0


class BenchError(RuntimeError):
    """The benchmark cannot produce a trustworthy number; the message says why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Placement:
    """Which CPU the server under test gets, and which the load (wrk, clients, fake upstream).

    `spare` is a third CPU, if there is one: row h then gives the two workers the first
    two CPUs and wrk the third, so that wrk does not take CPU time from the workers.
    """

    server: int | None
    load: int | None
    spare: int | None = None

    @classmethod
    def detect(cls) -> Placement:
        """The first CPUs this process may use; unpinned if there are fewer than 2 or no taskset."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2 or shutil.which("taskset") is None:
            print("warning: fewer than 2 CPUs or no taskset: processes run unpinned", file=sys.stderr)
            return cls(None, None)
        return cls(cpus[0], cpus[1], cpus[2] if len(cpus) > 2 else None)

    def pin(self, cpu: int | None, argv: list[str]) -> list[str]:
        return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]

    def pin_both(self, argv: list[str]) -> list[str]:
        """Free to run on either CPU. Needed explicitly: this process (whose affinity
        children inherit) is pinned to the load CPU."""
        if self.server is None or self.load is None:
            return argv
        return ["taskset", "-c", f"{self.server},{self.load}", *argv]

    def pin_scaling_load(self, argv: list[str]) -> list[str]:
        """Row h's wrk: on the spare CPU, or else sharing both CPUs with the workers at
        the lowest priority, so that it takes what the workers leave."""
        if self.spare is not None:
            return self.pin(self.spare, argv)
        return ["nice", "-n", "19", *self.pin_both(argv)]

    def describe_scaling(self) -> str:
        if self.spare is not None:
            return f"workers on CPUs {self.server},{self.load}, wrk on CPU {self.spare}"
        return f"workers and wrk (nice 19) on CPUs {self.server},{self.load}"

    def pin_self_to_load(self) -> None:
        # The in-process streaming clients are load, like wrk: keep them off the server's CPU.
        if self.load is not None:
            os.sched_setaffinity(0, {self.load})


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Processes:
    """Starts servers and guarantees their process groups are gone on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.servers: list[Server] = []
        self._previous_sigterm: signal.Handlers | None = None

    def __enter__(self) -> Processes:
        # SIGTERM would otherwise end us without unwinding, leaving the servers behind.
        self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_exit)  # type: ignore[assignment]
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop_all()
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)

    def start(
        self,
        name: str,
        argv: list[str],
        port: int,
        ready_path: str,
        env: dict[str, str] | None = None,
        deadline_s: float = STARTUP_DEADLINE_S,
    ) -> Server:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                argv,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        server = Server(name, port, process, log_path)
        self.servers.append(server)
        wait_ready(server, ready_path, deadline_s)
        return server

    def stop(self, server: Server) -> None:
        _stop_group(server.process)
        if server in self.servers:
            self.servers.remove(server)

    def stop_all(self) -> None:
        while self.servers:
            self.stop(self.servers[-1])


def wait_ready(server: Server, path: str, deadline_s: float = STARTUP_DEADLINE_S) -> None:
    """Poll `GET path` until the server answers any HTTP status, or fail with its log."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}")
        if _answers(server.port, path):
            return
        time.sleep(0.05)  # a poll interval, not a wait for readiness
    raise BenchError(f"{server.name} did not answer on port {server.port} within {deadline_s}s:\n{server.log_tail()}")


def _answers(port: int, path: str) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            return sock.recv(12).startswith(b"HTTP/1.1 ")
    except OSError:
        return False


def cpu_seconds(root: int) -> dict[int, float]:
    """User + system CPU seconds of `root` and every process below it (a multi-worker
    server's supervisor and workers), by pid, from /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue  # exited meanwhile
        # The command name (field 2) may contain spaces; the fields after it do not.
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    found: dict[int, float] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in times:
            found[pid] = times[pid]
            todo += children.get(pid, [])
    return found


def connections_by_pid(pids: list[int], port: int) -> dict[int, int]:
    """Established TCP connections on local `port` that each process holds open (its
    sockets in /proc/<pid>/fd matched against /proc/net/tcp): which worker got which
    connections. A socket shared by several of the processes counts for each."""
    established: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # ESTABLISHED
                        established.add(int(fields[9]))
        except OSError:
            continue
    found: dict[int, int] = {}
    for pid in pids:
        count = 0
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:[") and int(target[8:-1]) in established:
                        count += 1
        except OSError:
            continue  # exited meanwhile
        found[pid] = count
    return found


def idle_cpu_seconds() -> float:
    """Seconds all CPUs together spent idle (idle + iowait) since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()  # cpu user nice system idle iowait irq softirq steal ...
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """CPU time the machine spent on something other than this benchmark.

    The machine's busy time (wall time × CPUs − idle time from /proc/stat; the kernel
    tracks idle time exactly, busy time only by sampling) minus the CPU time of this
    process, every process below it (the servers, Redis, a running wrk) and its reaped
    children (finished wrk runs). On a quiet machine the difference stays between about
    0 and 0.15 CPUs (interrupt work not charged to any process); more means someone
    else's work competed with the step. Stolen time (a busy host) counts as other load.
    """

    def __init__(self) -> None:
        self._start = (0.0, 0.0, 0.0)

    @staticmethod
    def _ours() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return sum(cpu_seconds(os.getpid()).values()) + children.ru_utime + children.ru_stime

    def start(self) -> None:
        self._start = (idle_cpu_seconds(), self._ours(), time.monotonic())

    def stop(self) -> float:
        """Average CPUs of other load since start()."""
        idle, ours, began = self._start
        wall = time.monotonic() - began
        if wall <= 0:
            return 0.0
        busy = (os.cpu_count() or 1) * wall - (idle_cpu_seconds() - idle)
        return (busy - (self._ours() - ours)) / wall


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    # Signal the group even if the leader is gone: a child it forked may still hold a port.
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        process.poll()
        return
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_GRACE_S)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
