"""wrk: installing it where missing, running it pinned, reading its figures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.procs import BenchError

LUA_DIR = Path(__file__).resolve().parent / "lua"
APT_TIMEOUT_S = 600
# wrk stops itself after -d; this only catches a hung wrk.
RUN_SLACK_S = 30


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def ensure_wrk() -> str:
    """The wrk binary; `make bench` runs on fresh machines as root, so install it there."""
    found = shutil.which("wrk")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise BenchError("wrk is not installed (and apt-get as root is not available): install wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, timeout=APT_TIMEOUT_S, capture_output=True).returncode != 0:
        # A fresh image often has no package lists yet.
        subprocess.run(["apt-get", "update", "-q"], env=env, timeout=APT_TIMEOUT_S, capture_output=True)
        done = subprocess.run(install, env=env, timeout=APT_TIMEOUT_S, capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"apt-get install wrk failed:\n{done.stderr[-2000:]}")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk still not on PATH after apt-get install")
    return found


def run_wrk(
    url: str,
    script: str,
    body_file: Path,
    connections: int,
    duration_s: float,
    pin: list[str],
    nonce: str = "",
    pipeline: int = 1,
) -> WrkResult:
    """One wrk run with `script` (fixed.lua, unique.lua or pipeline.lua) from bench/lua;
    raises on errors. `pipeline` is pipeline.lua's depth (requests per batch)."""
    argv = [
        *pin,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA_DIR / script),
        url,
    ]
    env = {
        **os.environ,
        "BENCH_LUA_DIR": str(LUA_DIR),
        "BENCH_BODY_FILE": str(body_file),
        "BENCH_NONCE": nonce,
        "BENCH_PIPELINE_DEPTH": str(pipeline),
    }
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration_s + RUN_SLACK_S)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    result = _parse(done.stdout)
    if result.errors:
        raise BenchError(f"wrk saw {result.errors} errors against {url}:\n{done.stdout}")
    if result.requests == 0:
        raise BenchError(f"wrk completed no requests against {url}:\n{done.stdout}")
    return result


def _parse(output: str) -> WrkResult:
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line[len("BENCH_JSON ") :])
            errors = sum(
                data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
            )
            return WrkResult(
                requests=data["requests"],
                duration_s=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                errors=errors,
            )
    raise BenchError(f"no BENCH_JSON line in wrk output:\n{output}")
