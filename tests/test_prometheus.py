"""Every dashboard query and alert rule returns data from a real Prometheus.

A real Prometheus (Debian's package, installed by tests/install_test_servers.sh) runs on
a free loopback port with deploy/prometheus/alerts.yml loaded and the scrape job of
deploy/prometheus/prometheus.yml pointed at a real llmcache (served by uvicorn, in front
of the fake upstream), plus one target where nothing listens (so `up == 0` has data).

The proxy is configured so that every expression can have data:

* tiers: `local`; `redis-down`, a redis tier on a closed port (tier errors, the circuit
  breaker opens and re-trips); `redis-slow`, a redis tier on a socket that accepts
  connections and never answers (tier timeouts, and with a write queue of one, dropped
  writes);
* a model routed to a closed port (upstream unreachable);
* the semantic cache (embedded Qdrant, embeddings from the fake upstream) when it can be
  configured here.

The workload runs twice, with a scrape in between: a counter's first sample sets its
baseline, so rate() and increase() only see what happens after it. Nothing sleeps for a
fixed time: every wait polls a condition under a deadline.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import importlib
import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import yaml

from app.server import create_app
from tests import servers
from tests.conftest import ServedProxy, _capture_loop, installed_tool, make_settings
from tests.fake_upstream import FakeUpstream, fake_embedding

pytestmark = pytest.mark.prometheus

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "llmcache.json"
JOB = "llmcache"
MODEL = "gpt-4o-mini"
DEAD_MODEL = "dead-model"  # routed to a port where nothing listens
STARTUP_DEADLINE_S = 20.0
QUERY_DEADLINE_S = 25.0
# Grafana's interval variables, as a dashboard may use them.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "${__rate_interval}": "1m",
    "$__interval": "15s",
    "${__interval}": "15s",
    "$__range": "1h",
    "${__range}": "1h",
}


# ---------------------------------------------------------------------------------------
# what to check: every PromQL expression of the dashboard and of the rules
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    source: str
    expr: str


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_expressions() -> list[Expression]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = []
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                found.append(Expression(f"panel {panel['title']!r} {target.get('refId', '')}".strip(), expr))
    return found


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def rule_expressions() -> list[Expression]:
    return [Expression(f"alert {r['alert']}" if "alert" in r else f"record {r['record']}", r["expr"]) for r in rules()]


DASHBOARD_EXPRESSIONS = dashboard_expressions()
RULE_EXPRESSIONS = rule_expressions()
ALERT_NAMES = [r["alert"] for r in rules() if "alert" in r]


# ---------------------------------------------------------------------------------------
# servers
# ---------------------------------------------------------------------------------------


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved here, in the parent: the child must not load libraries between fork and exec.
_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL Prometheus if pytest dies without cleaning up."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Prometheus:
    def __init__(self, binary: str, workdir: Path, targets: list[str]) -> None:
        self.port = servers.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "prometheus.log"
        config = self._config(targets)
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.argv = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=10)

    @staticmethod
    def _config(targets: list[str]) -> dict[str, Any]:
        """deploy/prometheus/prometheus.yml with 1 s intervals, local paths and targets."""
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
        config.setdefault("global", {}).update(
            {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
        )
        config["rule_files"] = [str(PROMETHEUS_DIR / f) for f in config.get("rule_files", [])]
        jobs = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
        assert jobs, f"deploy/prometheus/prometheus.yml has no job {JOB!r}"
        job = jobs[0]
        job.update({"scrape_interval": "1s", "scrape_timeout": "1s", "static_configs": [{"targets": targets}]})
        config["scrape_configs"] = [job]
        return config

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited ({self.proc.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get("/-/ready").status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"prometheus not ready after {STARTUP_DEADLINE_S}s:\n{self.log_tail()}")

    def stop(self) -> None:
        self.http.close()
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = self.http.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert body.get("status") == "success", f"{expr}\n→ {response.status_code} {body}"
        assert body["data"]["resultType"] == "vector", body
        return body["data"]["result"]

    def wait_for(self, expr: str, deadline: float) -> list[dict[str, Any]]:
        """The query's series once at least one has a finite value (or the last answer)."""
        result: list[dict[str, Any]] = []
        while True:
            result = self.query(expr)
            if any(math.isfinite(float(series["value"][1])) for series in result):
                return result
            if time.monotonic() >= deadline:
                return result
            time.sleep(0.2)

    def last_scrape(self, instance: str) -> float:
        """Unix time of the newest scrape of `instance` (0 before the first)."""
        result = self.query(f'timestamp(up{{job="{JOB}", instance="{instance}"}})')
        return float(result[0]["value"][1]) if result else 0.0

    def wait_for_scrape_after(self, instance: str, moment: float) -> None:
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while self.last_scrape(instance) <= moment:
            assert time.monotonic() < deadline, f"no scrape of {instance} after {moment}"
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------
# the semantic cache, if it can run here
# ---------------------------------------------------------------------------------------

QUESTION = "What is the capital of France?"
PARAPHRASES = [
    "Which city is the capital of France?",
    "What's the capital of France?",
    "Tell me the capital of France.",
    "What is France's capital city?",
    "Name the capital of France.",
    "Capital of France?",
    "What is the capital city of France?",
    "France: what is its capital?",
    "Which city is France's capital?",
]


def closest_paraphrase() -> tuple[str, float]:
    """The paraphrase whose fake-upstream embedding is closest to QUESTION's (deterministic)."""
    base = np.asarray(fake_embedding(QUESTION))
    scored = [(float(base @ np.asarray(fake_embedding(p))), p) for p in PARAPHRASES]
    similarity, text = max(scored)
    return text, similarity


def semantic_settings() -> tuple[dict[str, Any] | None, str | None]:
    """(settings of the semantic section, None) or (None, why it cannot be configured)."""
    try:
        for module in (
            "app.semantic.factory",
            "app.semantic.cache",
            "app.semantic.qdrant",
            "app.semantic.remote_embedder",
        ):
            importlib.import_module(module)
    except Exception as exc:
        return None, f"the semantic cache cannot be configured here ({type(exc).__name__}: {exc})"
    return {
        "type": "qdrant",
        # The fake's embeddings are hashes, so unrelated questions can score high: only the
        # paraphrase request lowers the threshold (x-cache-similarity-threshold).
        "similarity_threshold": 0.99,
        "guard": False,
        "embedding": {"model": "text-embedding-3-small"},
        "qdrant": {"url": None, "path": None, "collection": "llmcache-prometheus-test"},
    }, None


# ---------------------------------------------------------------------------------------
# the workload
# ---------------------------------------------------------------------------------------


@dataclass
class Stack:
    prometheus: Prometheus
    proxy: ServedProxy
    instance: str
    dead_instance: str
    semantic_skip: str | None
    semantic_problem: str | None = None
    statuses: dict[str, int] = field(default_factory=dict)


def chat(
    client: openai.OpenAI,
    content: str,
    *,
    model: str = MODEL,
    headers: dict[str, str] | None = None,
    system: str | None = None,
) -> str:
    """One chat call; its x-cache-status, or the HTTP status of an error."""
    messages: list[Any] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": content})
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=messages, extra_headers=headers or {}
        )
    except openai.APIStatusError as exc:
        return str(exc.status_code)
    return raw.headers.get("x-cache-status", "?")


def run_round(stack: Stack, round_no: int) -> None:
    client = stack.proxy.client(timeout=30)
    tag = f"round {round_no}"
    statuses: list[str] = []

    # Semantic: a question, then (once its vector is indexed) a paraphrase of it.
    if stack.semantic_skip is None:
        paraphrase, similarity = closest_paraphrase()
        system = f"You answer geography questions ({tag})."
        statuses.append(chat(client, QUESTION, system=system))
        stack.proxy.drain()
        threshold = {"x-cache-similarity-threshold": f"{max(0.0, similarity - 0.05):.3f}"}
        got = chat(client, paraphrase, system=system, headers=threshold)
        statuses.append(got)
        if got != "semantic-hit":
            stack.semantic_problem = f"{tag}: a paraphrase answered x-cache-status {got!r}, not 'semantic-hit'"

    # A hit (and tokens saved): the warm-up entry of round 0.
    statuses.append(chat(client, "warm up"))

    jobs: list[tuple[str, dict[str, Any]]] = []
    # Coalescing: identical requests while the first is still upstream.
    jobs += [(f"coalesce {tag}", {"headers": {"x-fake-delay-ms": "800"}})] * 4
    jobs += [(f"bypass {tag} {i}", {"headers": {"x-cache-use-cache": "false"}}) for i in range(2)]
    jobs += [(f"upstream 500 {tag} {i}", {"headers": {"x-fake-status": "500"}}) for i in range(15)]
    jobs += [(f"unreachable {tag} {i}", {"model": DEAD_MODEL}) for i in range(15)]
    # Misses, concurrent: their writes overflow redis-slow's one-slot write queue.
    jobs += [(f"miss {tag} {i}", {}) for i in range(100)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        futures = [pool.submit(chat, client, content, **kwargs) for content, kwargs in jobs]
        statuses += [f.result() for f in futures]
    for status in statuses:
        stack.statuses[status] = stack.statuses.get(status, 0) + 1
    client.close()


@pytest.fixture(scope="module")
def stack(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = installed_tool("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    upstream.reset()
    closed_redis = servers.free_port()
    closed_upstream = servers.free_port()
    dead_target = servers.free_port()
    semantic, semantic_skip = semantic_settings()
    with servers.silent_port() as silent_redis:
        tiers = [
            {"type": "local"},
            # Refused at once: errors; the breaker opens, and re-trips at each probe.
            {
                "type": "redis",
                "name": "redis-down",
                "host": "127.0.0.1",
                "port": closed_redis,
                "breaker_failures": 3,
                "breaker_reset_s": 0.2,
            },
            # Never answers: timeouts; writes wait in a queue of one, the rest are dropped.
            {
                "type": "redis",
                "name": "redis-slow",
                "host": "127.0.0.1",
                "port": silent_redis,
                "timeout_s": 0.25,
                "breaker_failures": 1_000_000,
                "write_queue": 1,
                "write_concurrency": 1,
            },
        ]
        cache: dict[str, Any] = {"tiers": tiers}
        if semantic is not None:
            cache["semantic"] = semantic
        settings = make_settings(
            upstream.url,
            workdir / "cache",
            cache=cache,
            models=[{"name": DEAD_MODEL, "base_url": f"http://127.0.0.1:{closed_upstream}/v1"}],
        )
        proxy = ServedProxy(_capture_loop(create_app(settings))).start()
        instance = proxy.root.removeprefix("http://")
        dead_instance = f"127.0.0.1:{dead_target}"
        prometheus = Prometheus(binary, workdir, [instance, dead_instance])
        try:
            prometheus.start()
            stack = Stack(prometheus, proxy, instance, dead_instance, semantic_skip)
            # Round 0 creates the series, the scrape after it sets their baselines, and
            # rounds 1 and 2 move every counter, histogram and gauge past them.
            client = proxy.client(timeout=30)
            chat(client, "warm up")
            client.close()
            for round_no in (1, 2):
                run_round(stack, round_no)
                prometheus.wait_for_scrape_after(instance, time.time())
            yield stack
        finally:
            prometheus.stop()
            proxy.stop()


# ---------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------


def test_workload_produced_every_cache_status(stack: Stack) -> None:
    """The workload did what it is meant to (the queries below depend on it)."""
    for status in ("hit", "miss", "bypass", "500", "502"):
        assert stack.statuses.get(status), f"no {status!r} answers: {stack.statuses}"


@pytest.mark.parametrize("expression", DASHBOARD_EXPRESSIONS, ids=lambda e: e.source)
def test_dashboard_query_returns_data(stack: Stack, expression: Expression) -> None:
    deadline = time.monotonic() + QUERY_DEADLINE_S
    result = stack.prometheus.wait_for(expression.expr, deadline)
    assert result, f"{expression.source}: no series for\n{expression.expr}"
    assert any(math.isfinite(float(s["value"][1])) for s in result), f"{expression.source}: only NaN: {result}"


@pytest.mark.parametrize("expression", RULE_EXPRESSIONS, ids=lambda e: e.source)
def test_rule_expression_returns_data(stack: Stack, expression: Expression) -> None:
    deadline = time.monotonic() + QUERY_DEADLINE_S
    result = stack.prometheus.wait_for(expression.expr, deadline)
    assert result, f"{expression.source}: no series for\n{expression.expr}"


def test_semantic_hits_are_counted(stack: Stack) -> None:
    """The semantic-hit rate panel has its own series, not just its `or vector(0)` fallback."""
    if stack.semantic_skip is not None:
        pytest.skip(stack.semantic_skip)
    assert stack.semantic_problem is None, stack.semantic_problem
    expr = 'sum(rate(llmcache_requests_total{cache_status="semantic-hit"}[5m])) > 0'
    assert stack.prometheus.wait_for(expr, time.monotonic() + QUERY_DEADLINE_S), expr


def test_rules_are_loaded(stack: Stack) -> None:
    body = stack.prometheus.http.get("/api/v1/rules").json()
    assert body["status"] == "success", body
    loaded = {rule["name"]: rule for group in body["data"]["groups"] for rule in group["rules"]}
    expected = [r.get("alert") or r["record"] for r in rules()]
    assert sorted(loaded) == sorted(expected)
    for name, rule in loaded.items():
        assert rule.get("health") in ("ok", "unknown"), f"{name}: {rule.get('lastError')}"


def test_alerts_fire_under_the_workload(stack: Stack) -> None:
    """Each alert is pending or firing: the workload meets every condition (`for:` not yet run out)."""
    deadline = time.monotonic() + QUERY_DEADLINE_S
    states: dict[str, str] = {}
    while True:
        body = stack.prometheus.http.get("/api/v1/rules", params={"type": "alert"}).json()
        states = {rule["name"]: rule["state"] for group in body["data"]["groups"] for rule in group["rules"]}
        if all(states.get(name) in ("pending", "firing") for name in ALERT_NAMES):
            break
        assert time.monotonic() < deadline, f"alerts not pending/firing: {states}"
        time.sleep(0.2)
    # The tier alerts name the failing tiers.
    alerts = stack.prometheus.http.get("/api/v1/alerts").json()["data"]["alerts"]
    by_name: dict[str, set[str]] = {}
    for alert in alerts:
        by_name.setdefault(alert["labels"]["alertname"], set()).add(alert["labels"].get("tier", ""))
    assert "redis-down" in by_name["LLMCacheTierBreakerOpen"], by_name
    assert {"redis-down", "redis-slow"} <= by_name["LLMCacheTierErrors"], by_name
    assert "redis-slow" in by_name["LLMCacheTierWritesDropped"], by_name
    down = [a for a in alerts if a["labels"]["alertname"] == "LLMCacheDown"]
    assert {a["labels"]["instance"] for a in down} == {stack.dead_instance}, down
