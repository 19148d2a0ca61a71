"""Semantic cache accuracy through the product's HTTP API, at its default settings (issue 14).

    .venv/bin/python -m bench.semantic_http_eval --set en_test --set ml_test --gate
    .venv/bin/python -m bench.semantic_http_eval --set all
    .venv/bin/python -m bench.semantic_http_eval --set legacy --config-extra '{similarity_threshold: 0.85}'

Starts the fake upstream and `llmcache serve` (one local tier, embedded in-memory Qdrant,
the in-process all-MiniLM-L6-v2 embedder, no threshold: every semantic setting at its
default) as child processes on free ports. Each labelled pair gets its own namespace, so
pairs never match each other: `a` is sent (a miss, stored), then `b` with `no-store`, and `b` counts as
served when its `x-cache-status` is `semantic-hit` (or `hit`). The vector of `a` is written
in the background after its answer, so no `b` is sent before its `a` is shown to be
indexed: `a` plus a trailing space (same tokens, so the same vector, but another exact key)
with `no-store` must come back `semantic-hit`.

Precision = right hits / hits (1.0 with no hits), recall = paraphrases served /
paraphrases, near-miss false-hit rate = negatives other than kind `unrelated` served /
those negatives. A lookup that fails inside the proxy (a timeout under load) is a plain
miss to the client; the server log counts them ("lookup errors"). The report goes to
bench/results/semantic_http.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from bench.procs import HOST, Processes, Server, free_port
from bench.semantic_eval import Pair

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data" / "semantic"
OUT = ROOT / "results" / "semantic_http.md"
# set name → file under DATA; `legacy` is the first 862 labelled pairs (once semantic_pairs.jsonl), a dev split
SPLITS = {name: f"{name}.jsonl" for name in ("en_dev", "en_test", "ml_dev", "ml_test")} | {"legacy": "legacy_dev.jsonl"}
# set → (minimum precision, maximum near-miss false-hit rate, minimum recall); None: not gated
TARGETS: dict[str, tuple[float, float | None, float | None]] = {
    "en_test": (0.97, 0.03, 0.6),
    "ml_test": (0.97, None, None),
}
# What the default settings reach today on the test sets (docs/benchmarks.md), a little
# below: CI fails when a change makes the held-out figures worse, while the targets
# above are not met (no pair model installable here; see the issue 14 notes).
FLOORS: dict[str, tuple[float, float | None, float | None]] = {
    "en_test": (0.77, 0.12, 0.36),
    "ml_test": (0.9, None, None),
}
SERVED = ("semantic-hit", "hit")
INDEX_DEADLINE_S = 3.0
T = TypeVar("T")


@dataclass(frozen=True)
class Verdict:
    pair: Pair
    served: bool
    first_status: str  # of `a`: must be `miss`
    indexed: bool  # False: `a` never showed up in the index within INDEX_DEADLINE_S


@dataclass
class Score:
    pairs: int
    hits: int
    precision: float
    recall: float
    near_miss_rate: float
    unrelated_served: str
    by_kind: dict[str, str]
    by_lang: dict[str, str]
    wrong_hits: list[list[str]]
    anomalies: list[str]  # texts `a` that were not a miss, or never answered a semantic lookup
    lookup_errors: int  # semantic lookups the server logged as failed while this set ran
    seconds: float


def load_set(name: str) -> list[Pair]:
    path = DATA / SPLITS[name]
    pairs = [Pair(r["a"], r["b"], r["same"], r.get("kind", "?"), r.get("lang", "en")) for r in _rows(path)]
    if not pairs:
        raise SystemExit(f"{path}: no pairs")
    return pairs


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def proxy_config(upstream: Server, work: Path, extra: dict[str, Any]) -> Path:
    # Qdrant's default: embedded, in memory (a `path` adds a SQLite write per vector, ~35 ms here).
    semantic = {"type": "qdrant", "embedding": {"local": "all-MiniLM-L6-v2"}}
    config = {
        "server": {"host": HOST},
        "upstream": {"base_url": f"{upstream.url}/v1", "timeout_s": 30},
        "cache": {"tiers": [{"type": "local"}], "semantic": _merge(semantic, extra)},
    }
    path = work / "llmcache.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merge(base[key], value) if both else value
    return merged


def start_servers(procs: Processes, work: Path, extra: dict[str, Any]) -> Server:
    port = free_port()
    fake = procs.start(
        "fake-upstream", [sys.executable, "-m", "tests.fake_upstream", "--port", str(port)], port, "/_stats"
    )
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--config",
        str(proxy_config(fake, work, extra)),
        "--port",
        str(port),
    ]
    return procs.start("llmcache", argv, port, "/health")


async def status_of(client: httpx.AsyncClient, text: str, namespace: str, store: bool = True) -> str:
    headers = {"x-cache-namespace": namespace, **({} if store else {"x-cache-no-store": "true"})}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    response = await client.post("/v1/chat/completions", json=body, headers=headers)
    response.raise_for_status()
    return response.headers["x-cache-status"]


async def wait_indexed(client: httpx.AsyncClient, text: str, namespace: str) -> bool:
    """True once `text`'s vector answers a semantic lookup (the background write landed)."""
    deadline = time.monotonic() + INDEX_DEADLINE_S
    while time.monotonic() < deadline:
        if await status_of(client, text + " ", namespace, store=False) == "semantic-hit":
            return True
        await asyncio.sleep(0.02)  # a poll interval for a background write
    return False


async def judge_all(base_url: str, tag: str, pairs: list[Pair], concurrency: int) -> list[Verdict]:
    """Three passes over the pairs, `concurrency` requests in flight: every `a` (stored),
    every `a` shown to be indexed, every `b` (not stored)."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def bounded(work: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await work

    names = [f"{tag}-p{i}" for i in range(len(pairs))]
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        firsts = await asyncio.gather(*(bounded(status_of(client, p.a, n)) for p, n in zip(pairs, names)))
        indexed = await asyncio.gather(*(bounded(wait_indexed(client, p.a, n)) for p, n in zip(pairs, names)))
        seconds = await asyncio.gather(*(bounded(status_of(client, p.b, n, store=False)) for p, n in zip(pairs, names)))
    return [Verdict(*row) for row in zip(pairs, (s in SERVED for s in seconds), firsts, indexed)]


def served_by(verdicts: list[Verdict], group: Callable[[Pair], str]) -> dict[str, str]:
    """ "served/total" per group; paraphrase groups first."""
    counts: dict[str, list[int]] = {}
    for v in sorted(verdicts, key=lambda v: (not v.pair.same, group(v.pair))):
        seen = counts.setdefault(group(v.pair), [0, 0])
        seen[0] += v.served
        seen[1] += 1
    return {name: f"{served}/{total}" for name, (served, total) in counts.items()}


def score(verdicts: list[Verdict], lookup_errors: int, seconds: float) -> Score:
    hits = [v for v in verdicts if v.served]
    right = sum(v.pair.same for v in hits)
    positives = sum(v.pair.same for v in verdicts)
    near = [v for v in verdicts if not v.pair.same and v.pair.kind != "unrelated"]
    return Score(
        pairs=len(verdicts),
        hits=len(hits),
        precision=right / len(hits) if hits else 1.0,
        recall=right / positives if positives else 0.0,
        near_miss_rate=sum(v.served for v in near) / len(near) if near else 0.0,
        unrelated_served=served_by(verdicts, lambda p: p.kind).get("unrelated", "0/0"),
        by_kind=served_by(verdicts, lambda p: p.kind),
        by_lang=served_by(verdicts, lambda p: p.lang),
        wrong_hits=[[v.pair.kind, v.pair.a, v.pair.b] for v in hits if not v.pair.same],
        anomalies=[v.pair.a for v in verdicts if v.first_status != "miss" or not v.indexed],
        lookup_errors=lookup_errors,
        seconds=round(seconds, 1),
    )


def evaluate(sets: list[str], extra: dict[str, Any], concurrency: int = 8) -> dict[str, Score]:
    """Every set against one fresh llmcache (namespaces keep the sets and pairs apart)."""
    loaded = {name: load_set(name) for name in sets}
    scores: dict[str, Score] = {}
    with tempfile.TemporaryDirectory(prefix="semantic-http-") as tmp, Processes(Path(tmp)) as procs:
        proxy = start_servers(procs, Path(tmp), extra)
        for name, pairs in loaded.items():
            started, errors = time.perf_counter(), lookup_errors(proxy)
            verdicts = asyncio.run(judge_all(proxy.url, name, pairs, concurrency))
            scores[name] = score(verdicts, lookup_errors(proxy) - errors, time.perf_counter() - started)
    return scores


def lookup_errors(proxy: Server) -> int:
    return proxy.log_path.read_text(errors="replace").count("semantic lookup failed")


def summary(s: Score) -> str:
    return (
        f"{s.pairs} pairs, {s.hits} hits, precision {s.precision:.3f}, recall {s.recall:.3f}, near-miss false hits "
        f"{s.near_miss_rate:.3f}, {len(s.anomalies)} anomalies, {s.lookup_errors} lookup errors, {s.seconds} s"
    )


def failures(
    scores: dict[str, Score], limits: dict[str, tuple[float, float | None, float | None]] = TARGETS
) -> list[str]:
    """The limits (issue 14's targets by default) the test sets miss (only the sets that were run)."""
    found = []
    for name, (precision, near_miss, recall) in limits.items():
        s = scores.get(name)
        if s is None:
            continue
        if s.precision < precision:
            found.append(f"{name}: precision {s.precision:.3f} < {precision} ({s.hits} hits)")
        if near_miss is not None and s.near_miss_rate > near_miss:
            found.append(f"{name}: near-miss false-hit rate {s.near_miss_rate:.3f} > {near_miss}")
        if recall is not None and s.recall < recall:
            found.append(f"{name}: recall {s.recall:.3f} < {recall}")
    return found


def markdown(command: str, extra: dict[str, Any], scores: dict[str, Score]) -> str:
    out = ["# Semantic cache accuracy through the HTTP API\n", f"Command: `{command}`\n"]
    out.append(f"Settings: default semantic settings{f', overridden by `{json.dumps(extra)}`' if extra else ''}.\n")
    out += [
        "| set | pairs | hits | precision | recall | near-miss false hits | unrelated served | anomalies | lookup errors | seconds |"
    ]
    out += ["|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in scores.items():
        out.append(
            f"| {name} | {s.pairs} | {s.hits} | {s.precision:.3f} | {s.recall:.3f} | {s.near_miss_rate:.3f} "
            f"| {s.unrelated_served} | {len(s.anomalies)} | {s.lookup_errors} | {s.seconds} |"
        )
    for name, s in scores.items():
        out += [f"\n## {name}\n", "| kind (paraphrases first) | served |", "|---|---:|"]
        out += [f"| {kind} | {share} |" for kind, share in s.by_kind.items()]
        if len(s.by_lang) > 1:
            out += ["\n| lang | served |", "|---|---:|", *(f"| {g} | {share} |" for g, share in s.by_lang.items())]
        out.append(f"\nWrong hits ({len(s.wrong_hits)}, first 40):\n")
        if name in TARGETS:
            # Reading the test set's errors is how a rule gets tuned on it: counts only.
            out.append("(test set: not listed)")
        else:
            out += [f"- `{kind}`: {a!r} / {b!r}" for kind, a, b in s.wrong_hits[:40]]
        if s.anomalies:
            out.append(f"\nNever matched by itself plus a space, or not a first miss ({len(s.anomalies)}):\n")
            out += [f"- {a!r}" for a in s.anomalies]
    return "\n".join(out) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--set", action="append", choices=[*SPLITS, "all"], help="repeatable; default en_test")
    ap.add_argument("--config-extra", default="{}", help="YAML mapping merged into cache.semantic")
    ap.add_argument("--concurrency", type=int, default=8, help="pairs in flight at once")
    ap.add_argument("--gate", action="store_true", help="exit 1 when a test-set target is missed")
    ap.add_argument("--out", type=Path, default=OUT, help="markdown report; the JSON goes next to it")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = shlex.join(
        [".venv/bin/python", "-m", "bench.semantic_http_eval", *(sys.argv[1:] if argv is None else argv)]
    )
    print(command)
    chosen = args.set or ["en_test"]
    sets = list(dict.fromkeys(s for name in chosen for s in (SPLITS if name == "all" else (name,))))
    if args.gate and not any(name in TARGETS for name in sets):
        print("--gate needs en_test or ml_test among the sets", file=sys.stderr)
        return 2
    extra = yaml.safe_load(args.config_extra) or {}
    scores = evaluate(sets, extra, args.concurrency)
    report = markdown(command, extra, scores)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    document = {"command": command, "config_extra": extra, "sets": {k: asdict(v) for k, v in scores.items()}}
    args.out.with_suffix(".json").write_text(json.dumps(document, indent=1, ensure_ascii=False), encoding="utf-8")
    missed = failures(scores)
    for line in missed:
        print(f"MISSED {line}", file=sys.stderr)
    return 1 if args.gate and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
