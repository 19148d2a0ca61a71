"""Medians, ratios against the targets, and the Markdown that run.py prints and saves."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from bench.procs import Placement

Figures = dict[str, float]
Rounds = dict[str, list[Figures]]  # row -> one Figures per round


@dataclass(frozen=True)
class Ratio:
    label: str
    rows: tuple[str, ...]
    compute: Callable[[dict[str, Figures]], float]
    unit: str
    target: str
    passes: Callable[[float], bool] | None
    digits: int = 3


def _at_least(limit: float) -> Callable[[float], bool]:
    return lambda value: value >= limit


def _below(limit: float) -> Callable[[float], bool]:
    return lambda value: value < limit


RATIOS = (
    Ratio("b/a hit throughput (c32)", ("a", "b"),
          lambda r: r["b"]["rps_c32"] / r["a"]["rps_c32"], "×", "≥ 0.5", _at_least(0.5)),
    Ratio("d−c miss overhead, p50 (c1)", ("c", "d"),
          lambda r: r["d"]["p50_ms"] - r["c"]["p50_ms"], "ms", "< 1 ms", _below(1.0)),
    Ratio("d′−c miss overhead with disk tier, p50 (c1)", ("c", "dd"),
          lambda r: r["dd"]["p50_ms"] - r["c"]["p50_ms"], "ms", "—", None),
    Ratio("b/a hit latency, p50 (c1)", ("a", "b"),
          lambda r: r["b"]["p50_ms"] / r["a"]["p50_ms"], "×", "—", None),
    Ratio("e streamed-miss TTFB overhead, p50", ("e",),
          lambda r: r["e"]["proxy_p50_ms"] - r["e"]["direct_p50_ms"], "ms", "< 1 ms", _below(1.0)),
    Ratio("f upstream calls for 50 identical streams", ("f",),
          lambda r: r["f"]["upstream_calls"], "", "= 1", lambda v: v == 1, digits=0),
    Ratio("f first-event spread, leader vs followers", ("f",),
          lambda r: r["f"]["spread_ms"], "ms", "—", None),
)

ROW_TITLES = {
    "a": "a — bare ASGI app (ceiling)",
    "b": "b — llmcache hit, local tier",
    "c": "c — fake upstream direct, unique bodies",
    "d": "d — llmcache miss, local tier",
    "dd": "d′ — llmcache miss, local+disk tiers",
}


def median_figures(rounds: list[Figures]) -> Figures:
    return {name: statistics.median(f[name] for f in rounds) for name in rounds[0]}


def ratio_values(ratio: Ratio, results: Rounds) -> list[float]:
    """One value per round, each from figures measured minutes apart at most."""
    count = min(len(results[row]) for row in ratio.rows)
    return [ratio.compute({row: results[row][i] for row in ratio.rows}) for i in range(count)]


def missed_targets(results: Rounds) -> list[str]:
    missed = []
    for ratio in RATIOS:
        if ratio.passes is None or not all(row in results for row in ratio.rows):
            continue
        if not ratio.passes(statistics.median(ratio_values(ratio, results))):
            missed.append(ratio.label)
    return missed


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}, Python {platform.python_version()}"


def revision() -> str:
    """The commit measured, flagged when the proxy's code differs from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "app"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if commit.returncode != 0:
        return "unknown"
    return commit.stdout.strip() + (" with uncommitted changes in app/" if dirty.stdout.strip() else "")


def render(
    results: Rounds, placement: Placement, rounds: int, duration_s: float, stream_requests: int, burst: int
) -> str:
    pin = "unpinned"
    if placement.server is not None:
        pin = f"server under test on CPU {placement.server}; wrk, clients and fake upstream on CPU {placement.load}"
    lines = [
        f"# llmcache benchmark — {time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        f"- machine: {machine()}",
        f"- code: {revision()}",
        f"- placement: {pin}",
        f"- {rounds} round(s), rows alternated within each round; wrk runs {duration_s:g} s, -t1; medians over rounds",
        "",
    ]
    lines += _wrk_table(results)
    lines += _stream_table(results, stream_requests, burst)
    lines += _ratio_table(results)
    lines += _round_detail(results)
    return "\n".join(lines) + "\n"


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def _wrk_table(results: Rounds) -> list[str]:
    rows = [row for row in ROW_TITLES if row in results]
    if not rows:
        return []
    out = ["## Request/response (wrk)", "",
           "| row | req/s, 32 conns | req/s, 1 conn | p50 ms, 1 conn | p99 ms, 1 conn |",
           "| --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        m = median_figures(results[row])
        cells = (_fmt(m.get("rps_c32"), 0), _fmt(m["rps_c1"], 0), _fmt(m["p50_ms"], 3), _fmt(m["p99_ms"], 3))
        out.append(f"| {ROW_TITLES[row]} | " + " | ".join(cells) + " |")
    return out + [""]


def _stream_table(results: Rounds, stream_requests: int, burst: int) -> list[str]:
    out: list[str] = []
    if "e" in results:
        m = median_figures(results["e"])
        title = f"## Streaming: time to first SSE event of a miss ({stream_requests} sequential requests per side per round)"
        out += [title, "",
                "| path | p50 ms | p99 ms |", "| --- | ---: | ---: |",
                f"| e — fake upstream direct | {_fmt(m['direct_p50_ms'], 3)} | {_fmt(m['direct_p99_ms'], 3)} |",
                f"| e — through llmcache | {_fmt(m['proxy_p50_ms'], 3)} | {_fmt(m['proxy_p99_ms'], 3)} |", ""]
    if "f" in results:
        m = median_figures(results["f"])
        out += [f"## Coalescing: {burst} identical streamed misses at once, upstream stalls 200 ms", "",
                "| upstream calls | leader TTFB ms | first-event spread ms (max − min) |", "| ---: | ---: | ---: |",
                f"| {m['upstream_calls']:.0f} | {_fmt(m['leader_ttfb_ms'], 1)} | {_fmt(m['spread_ms'], 2)} |", ""]
    return out


def _ratio_table(results: Rounds) -> list[str]:
    out = ["## Side-by-side figures (median of per-round values)", "",
           "| figure | value | per round | target | result |", "| --- | ---: | --- | --- | --- |"]
    for ratio in RATIOS:
        if not all(row in results for row in ratio.rows):
            continue
        values = ratio_values(ratio, results)
        value = statistics.median(values)
        verdict = "—" if ratio.passes is None else ("PASS" if ratio.passes(value) else "**MISS**")
        unit = f" {ratio.unit}" if ratio.unit and ratio.unit != "×" else ratio.unit
        each = ", ".join(_fmt(v, ratio.digits) for v in values)
        out.append(f"| {ratio.label} | {_fmt(value, ratio.digits)}{unit} | {each} | {ratio.target} | {verdict} |")
    return out + [""]


def _round_detail(results: Rounds) -> list[str]:
    out = ["<details><summary>every round</summary>", "", "| row | round | figures |", "| --- | ---: | --- |"]
    for row, rounds in results.items():
        for number, figures in enumerate(rounds, 1):
            text = ", ".join(f"{k}={_fmt(v, 0 if k.startswith(('rps', 'upstream')) else 3)}" for k, v in figures.items())
            out.append(f"| {row} | {number} | {text} |")
    return out + ["", "</details>"]
