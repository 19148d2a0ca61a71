"""`llmcache serve` as a user runs it: a subprocess, the console script, the SDK."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests import servers
from tests.conftest import metric_value

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parent.parent


def wait_healthy(url: str, process: subprocess.Popen, log: Path, deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise AssertionError(f"llmcache exited: {log.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("llmcache did not become healthy")


def serve(tmp_path: Path, upstream_url: str, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "LLMCACHE_UPSTREAM__BASE_URL": upstream_url}
    script = Path(sys.executable).parent / "llmcache"
    with log.open("a") as sink:
        return subprocess.Popen(
            [str(script), "serve", "--config", str(ROOT / "config.yaml"), "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def test_serve_default_config_caches_and_survives_restart(tmp_path, fake):
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    ids = []
    for round_ in range(2):
        log = tmp_path / f"serve{round_}.log"
        process = serve(tmp_path, fake.url, port, log)
        try:
            wait_healthy(url, process, log)
            client = openai.OpenAI(base_url=url + "/v1", api_key="sk-user", max_retries=0)
            for _ in range(2):
                raw = client.chat.completions.with_raw_response.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "persist me"}]
                )
                ids.append((raw.headers["x-cache-status"], raw.parse().id))
        finally:
            process.terminate()
            process.wait(20)
    # round 1: miss then hit; round 2 (empty memory tier): served from the disk tier
    assert [s for s, _ in ids] == ["miss", "hit", "hit", "hit"]
    assert len({i for _, i in ids}) == 1
    assert fake.chat_calls() == 1
    assert (tmp_path / ".llmcache").is_dir()


def test_workers_share_metrics(tmp_path, fake):
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "workers.log"
    # Memory tier only: the disk tier would be shared by the workers and hide which one served.
    env = {
        **os.environ,
        "LLMCACHE_UPSTREAM__BASE_URL": fake.url,
        "LLMCACHE_CACHE__TIERS": '[{"type": "local"}]',
        "LLMCACHE_ADMIN__TOKEN": "workers-admin",
        "LLMCACHE_PRICES": '[{"model": "gpt-4o", "input": 2, "cached_input": 1, "output": 8}]',
    }
    script = Path(sys.executable).parent / "llmcache"
    with log.open("a") as sink:
        process = subprocess.Popen(
            [str(script), "serve", "--config", str(ROOT / "config.yaml"), "--port", str(port), "--workers", "2"],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(url, process, log)
        request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "which worker?"}]}
        sent = 0
        # Each worker has its own memory tier, so the same request misses once per worker
        # that serves it: two upstream calls prove both workers answered.
        while fake.chat_calls() < 2 and sent < 400:
            with httpx.Client() as fresh_connection:
                answer = fresh_connection.post(url + "/v1/chat/completions", json=request)
                assert answer.status_code == 200
            sent += 1
        assert fake.chat_calls() == 2
        usage = answer.json()["usage"]
        # every answer but the two misses was a hit, priced at the configured gpt-4o price
        saved_usd = (sent - 2) * (usage["prompt_tokens"] * 2 + usage["completion_tokens"] * 8) / 1e6
        for _ in range(3):  # whichever worker answers the scrape reports both
            text = httpx.get(url + "/metrics").text
            assert metric_value(text, "llmcache_requests_total") == sent
            assert metric_value(text, "llmcache_request_duration_seconds_count") == sent
            assert metric_value(text, "llmcache_cost_saved_usd_total", model="gpt-4o") == pytest.approx(saved_usd)
            with httpx.Client() as fresh_connection:
                stats = fresh_connection.get(url + "/cache/stats", headers={"authorization": "Bearer workers-admin"})
            assert stats.json()["cost_saved_usd"]["total"] == pytest.approx(saved_usd)
    finally:
        process.terminate()
        process.wait(20)


def test_a_hit_arrives_in_one_read(tmp_path, fake):
    """The head and body of a response leave in one write, so a client's first read
    holds all of it (two writes would often wake it with the head alone)."""
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    process = serve(tmp_path, fake.url, port, log)
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"one read"}]}'
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer sk-user\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )
    try:
        wait_healthy(url, process, log)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            for number in range(50):
                sock.sendall(request)
                head, _, rest = sock.recv(65536).partition(b"\r\n\r\n")
                fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:])
                assert fields[b"x-cache-status"] == (b"miss" if number == 0 else b"hit")
                if number:
                    assert len(rest) == int(fields[b"content-length"]), f"request {number}: a partial first read"
                else:  # the miss may take more reads; finish reading it
                    while len(rest) < int(fields[b"content-length"]):
                        rest += sock.recv(65536)
    finally:
        process.terminate()
        process.wait(20)
    assert fake.chat_calls() == 1
