"""Shared fixtures: the fake upstream, and llmcache served for real by uvicorn.

Integration tests talk to a real uvicorn server over loopback with the official
`openai` SDK; fast tests drive the same app in-process through httpx.ASGITransport;
tests/unit needs neither.

A test that needs a real server carries its marker: `redis` (Redis, Cluster, RediSearch),
`object_store` (moto S3, fake-gcs-server, Azurite), `prometheus` (the prometheus and
promtool binaries), `subprocess` (`llmcache serve` or another CLI command as a child
process). `pytest -m "not redis and not object_store and not prometheus and not
subprocess"` runs everything else; a test that starts one of these without its marker
fails (servers.require_marker).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.protocol import protocol_class
from app.server import LLMCache, create_app
from tests import object_stores, servers
from tests.fake_upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "admin-secret"
API_KEY = "sk-test-tenant-a"


def wait_for(predicate: Callable[[], bool], deadline_s: float = 5.0) -> bool:
    """Poll `predicate` until it holds (True) or `deadline_s` passes (False)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def metric_value(text: str, sample: str, **labels: str) -> float:
    """The sum of a sample's values in a /metrics exposition, over the label sets that
    carry `labels` (all of them when none are given)."""
    return sum(
        found.value
        for family in text_string_to_metric_families(text)
        for found in family.samples
        if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items())
    )


def installed_tool(name: str) -> str:
    """The path of a binary tests/install_test_servers.sh installs (prometheus, promtool):
    a skip when it is missing locally, a failure on CI."""
    servers.require_marker("prometheus", name)
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: run `bash tests/install_test_servers.sh` (Debian package prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`llmcache ARGS` as a user runs it, from the repository root (`env`: the whole environment)."""
    servers.require_marker("subprocess", f"`llmcache {args[0] if args else ''}`")
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=60, env=env
    )


# Tests in modules this branch leaves to their owners, marked here until the marks are
# added in place: (file name, test name with its parameter id) → markers.
MARKED_ELSEWHERE: dict[tuple[str, str], tuple[str, ...]] = {
    ("test_hostile.py", "test_read_your_writes[s3]"): ("object_store",),
    ("test_hostile.py", "test_serve_on_a_port_in_use_exits_naming_it[disk]"): ("subprocess",),
    ("test_hostile.py", "test_serve_on_a_port_in_use_exits_naming_it[redis]"): ("subprocess", "redis"),
    ("test_hostile.py", "test_check_config_never_prints_a_secret"): ("subprocess",),
    ("test_hostile.py", "test_serve_log_prints_no_secret"): ("subprocess",),
    ("test_litellm_import.py", "test_check_config_cli_accepts_the_rendered_file"): ("subprocess",),
    ("test_litellm_import.py", "test_check_config_cli_names_a_missing_variable"): ("subprocess",),
    ("test_litellm_import.py", "test_cli_prints_config_and_warnings"): ("subprocess",),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for marker in MARKED_ELSEWHERE.get((item.path.name, item.name), ()):
            item.add_marker(marker)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before its fixtures: a server a fixture starts is checked against this test's markers.
    servers.running_test = item


def pytest_runtest_teardown(item: pytest.Item) -> None:
    servers.running_test = None


def make_settings(upstream_url: str, cache_dir: Path, **sections: Any) -> Settings:
    """Settings for a test proxy: local + disk tiers under tmp, admin enabled."""
    cache = {"tiers": [{"type": "local"}, {"type": "disk", "path": str(cache_dir)}]}
    cache.update(sections.pop("cache", {}))
    values: dict[str, Any] = {
        "upstream": {"base_url": upstream_url, "timeout_s": 5},
        "cache": cache,
        "admin": {"token": ADMIN_TOKEN},
    }
    for section, overrides in sections.items():
        values[section] = {**values.get(section, {}), **overrides} if isinstance(overrides, dict) else overrides
    return Settings(**values)


class ServedProxy:
    """llmcache on a real uvicorn server, in a thread with its own event loop."""

    def __init__(self, app: LLMCache) -> None:
        self.app = app
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            loop="uvloop",
            http=protocol_class(app.settings.server),
            access_log=False,
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.root = ""

    def start(self) -> ServedProxy:
        self.thread.start()
        started = threading.Event()
        for _ in range(500):
            if self.server.started:
                started.set()
                break
            self.thread.join(0.01)
        if not started.is_set():
            raise RuntimeError("llmcache did not start")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.root = f"http://127.0.0.1:{port}"
        return self

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def client(self, api_key: str = API_KEY, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, max_retries=0, **kwargs)

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.root, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)

    def drain(self) -> None:
        """Wait until background writes (disk tier) have landed."""
        runtime = self.app.runtime
        loop = getattr(self.app, "_serving_loop", None)
        if runtime is not None and loop is not None:
            asyncio.run_coroutine_threadsafe(runtime.chain.drain(), loop).result(10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream().start() as up:
        yield up


@pytest.fixture
def fake(upstream: FakeUpstream) -> FakeUpstream:
    upstream.reset()
    return upstream


@pytest.fixture
def serve(fake: FakeUpstream, tmp_path: Path) -> Iterator[Callable[..., ServedProxy]]:
    """serve(**sections) → a running proxy in front of the fake upstream."""
    started: list[ServedProxy] = []

    def start(**sections: Any) -> ServedProxy:
        settings = make_settings(fake.url, tmp_path / f"cache{len(started)}", **sections)
        app = create_app(settings)
        proxy = ServedProxy(_capture_loop(app))
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()


def _capture_loop(app: LLMCache) -> LLMCache:
    """Remember the serving loop so tests can run coroutines on it (e.g. drain writes)."""
    original = app.startup

    async def startup() -> Any:
        runtime = await original()
        app._serving_loop = asyncio.get_running_loop()  # type: ignore[attr-defined]
        return runtime

    app.startup = startup  # type: ignore[method-assign]
    return app


@pytest.fixture
async def asgi(fake: FakeUpstream, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """asgi(**sections) → an httpx client driving the app in-process (no server)."""
    apps: list[LLMCache] = []
    clients: list[httpx.AsyncClient] = []

    async def make(**sections: Any) -> httpx.AsyncClient:
        settings = make_settings(fake.url, tmp_path / f"asgi{len(apps)}", **sections)
        app = create_app(settings)
        await app.startup()
        apps.append(app)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://llmcache",
            headers={"authorization": f"Bearer {API_KEY}"},
        )
        client.app = app  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
    for app in apps:
        await app.shutdown()


@pytest.fixture(scope="session")
def redis_standalone() -> Iterator[servers.RedisInfo]:
    """A real redis-server (with RediSearch loaded, so semantic tests can share it)."""
    with servers.redis_server(modules=True) as info:
        yield info


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[servers.ClusterInfo]:
    """A real three-master Redis Cluster."""
    with servers.redis_cluster(3) as info:
        yield info


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[servers.SentinelInfo]:
    """A real master, its replica and a Sentinel watching them (failover tests start their own)."""
    with servers.redis_sentinel() as info:
        yield info


# One emulator per object store for the whole run, shared by the contract suite and the
# object-tier tests.
@pytest.fixture(scope="session")
def s3_store() -> Iterator[object_stores.ObjectStore]:
    with object_stores.s3_store() as store:
        yield store


@pytest.fixture(scope="session")
def gcs_store() -> Iterator[object_stores.ObjectStore]:
    with object_stores.gcs_store() as store:
        yield store


@pytest.fixture(scope="session")
def azure_store() -> Iterator[object_stores.ObjectStore]:
    with object_stores.azure_store() as store:
        yield store
