"""Row l: LiteLLM's proxy answering the hit row's request from its own in-process cache.

The most used peer, measured in the same run as the bare app (a) and llmcache (b): the
pinned `litellm[proxy]` in a virtualenv of its own (`bench/.venv-litellm`, made on first
use: its dependencies must not mix with llmcache's), one worker, its local in-memory
cache (`cache_params: {type: local}`), in front of the same fake upstream, placed on the
server CPU like the proxy, sent the same request body by the same wrk script.

Its answers are not llmcache's bytes (LiteLLM rebuilds the response object), so the row
is checked by what it must not do: once warm, a run may not make a single upstream call.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.bodies import MODEL
from bench.procs import REPO, BenchError, Placement, Processes, Server, free_port

PACKAGE = "litellm[proxy]==1.106.12"
VENV = REPO / "bench" / ".venv-litellm"
INSTALL_TIMEOUT_S = 1800
READY_PATH = "/health/liveliness"
STARTUP_DEADLINE_S = 180.0  # it imports a great deal before it listens
# No network: the model cost map ships with the package; no telemetry.
ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR"}


def ensure() -> Path:
    """The `litellm` console script of the pinned version, installed if missing."""
    script = VENV / "bin" / "litellm"
    stamp = VENV / ".installed"
    if script.exists() and stamp.exists() and stamp.read_text() == PACKAGE:
        return script
    python = VENV / "bin" / "python"
    steps = [[sys.executable, "-m", "venv", str(VENV)]] if not python.exists() else []
    steps.append([str(python), "-m", "pip", "install", "--quiet", PACKAGE])
    for step in steps:
        done = subprocess.run(step, timeout=INSTALL_TIMEOUT_S, capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"installing {PACKAGE} failed:\n{done.stderr[-2000:]}")
    stamp.write_text(PACKAGE)
    return script


def config(path: Path, upstream: Server) -> Path:
    path.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream.url}/v1\n"
        "      api_key: sk-bench\n"
        "litellm_settings:\n"
        "  cache: true\n"
        # LiteLLM's in-memory entries expire after 10 minutes by default; a run is longer.
        "  cache_params: {type: local, ttl: 86400}\n"
        "  telemetry: false\n"
        # No key, like llmcache in the hit row: LiteLLM refuses to start keyless unless told.
        "general_settings:\n"
        "  dangerously_permit_weak_or_unset_master_key: true\n"
    )
    return path


def start(procs: Processes, placement: Placement, upstream: Server, work: Path) -> Server:
    script = ensure()
    port = free_port()
    argv = [str(script), "--config", str(config(work / "litellm.yaml", upstream)), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--num_workers", "1"]
    env = {**ENV, "PATH": f"{script.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    argv = placement.pin(placement.server, argv)
    return procs.start("litellm-proxy", argv, port, READY_PATH, env, STARTUP_DEADLINE_S)
