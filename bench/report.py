"""Medians, ratios against the targets, and the Markdown that run.py prints and saves."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.procs import Placement

Figures = dict[str, float]
Rounds = dict[str, list[Figures]]  # row -> one Figures per round
OtherLoads = list[tuple[int, str, float]]  # (round, row, CPUs of other load during that step)
# Above this, a step shared the machine with someone else's work (quiet: 0 to 0.15).
OTHER_LOAD_NOTICE_CPUS = 0.2


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


def _at_most(limit: float) -> Callable[[float], bool]:
    return lambda value: value <= limit


RATIOS = (
    Ratio(
        "b/a hit throughput (c32)",
        ("a", "b"),
        lambda r: r["b"]["rps_c32"] / r["a"]["rps_c32"],
        "×",
        "≥ 0.75",
        _at_least(0.75),
    ),
    Ratio(
        "d−c miss overhead, p50 (c1)",
        ("c", "d"),
        lambda r: r["d"]["p50_ms"] - r["c"]["p50_ms"],
        "ms",
        "< 0.3 ms",
        _below(0.3),
    ),
    Ratio(
        "d′−c miss overhead with disk tier, p50 (c1)",
        ("c", "dd"),
        lambda r: r["dd"]["p50_ms"] - r["c"]["p50_ms"],
        "ms",
        "—",
        None,
    ),
    Ratio("b/a hit latency, p50 (c1)", ("a", "b"), lambda r: r["b"]["p50_ms"] / r["a"]["p50_ms"], "×", "—", None),
    Ratio(
        "b−a hit latency, p50 (c1)",
        ("a", "b"),
        lambda r: r["b"]["p50_ms"] - r["a"]["p50_ms"],
        "ms",
        "≤ 0.05 ms",
        _at_most(0.05),
    ),
    Ratio(
        "l/a LiteLLM proxy hit throughput (c32)",
        ("a", "l"),
        lambda r: r["l"]["rps_c32"] / r["a"]["rps_c32"],
        "×",
        "—",
        None,
    ),
    Ratio(
        "l−a LiteLLM proxy hit latency, p50 (c1)",
        ("a", "l"),
        lambda r: r["l"]["p50_ms"] - r["a"]["p50_ms"],
        "ms",
        "—",
        None,
    ),
    Ratio(
        "b/l hit throughput, llmcache over LiteLLM (c32)",
        ("b", "l"),
        lambda r: r["b"]["rps_c32"] / r["l"]["rps_c32"],
        "×",
        "—",
        None,
    ),
    Ratio(
        "e streamed-miss TTFB overhead, p50",
        ("e",),
        lambda r: r["e"]["proxy_p50_ms"] - r["e"]["direct_p50_ms"],
        "ms",
        "< 0.5 ms",
        _below(0.5),
    ),
    Ratio(
        "e the same, median of the per-request differences (each proxied request minus its direct neighbour)",
        ("e",),
        lambda r: r["e"]["paired_p50_ms"],
        "ms",
        "—",
        None,
    ),
    Ratio(
        "e′ streamed-miss TTFB overhead with a 2-token answer, p50",
        ("e",),
        lambda r: r["e"]["proxy_p50_ms_short"] - r["e"]["direct_p50_ms_short"],
        "ms",
        "—",
        None,
    ),
    Ratio(
        "f upstream calls for 50 identical streams",
        ("f",),
        lambda r: r["f"]["upstream_calls"],
        "",
        "= 1",
        lambda v: v == 1,
        digits=0,
    ),
    Ratio("f first-event spread, leader vs followers", ("f",), lambda r: r["f"]["spread_ms"], "ms", "—", None),
    Ratio(
        "g−b−rtt Redis-tier hit cost beyond one Redis round trip, p50 (c1)",
        ("g",),
        lambda r: r["g"]["p50_ms"] - r["g"]["local_p50_ms"] - r["g"]["rtt_p50_ms"],
        "ms",
        "≤ 0.5 ms",
        _at_most(0.5),
    ),
    Ratio(
        "g−b Redis-tier hit latency over a local-tier hit, p50 (c1)",
        ("g",),
        lambda r: r["g"]["p50_ms"] - r["g"]["local_p50_ms"],
        "ms",
        "—",
        None,
    ),
    Ratio(
        "g/b proxy CPU time per hit (c1)",
        ("g",),
        lambda r: r["g"]["cpu_us_per_hit"] / r["g"]["local_cpu_us_per_hit"],
        "×",
        "—",
        None,
    ),
    Ratio(
        "h hit throughput, --workers 2 / --workers 1 (c64)",
        ("h",),
        lambda r: r["h"]["rps_w2"] / r["h"]["rps_w1"],
        "×",
        "≥ 1.6",
        _at_least(1.6),
    ),
    Ratio(
        "h proxy CPU time per hit, --workers 2 / --workers 1",
        ("h",),
        lambda r: r["h"]["cpu_us_per_request_w2"] / r["h"]["cpu_us_per_request_w1"],
        "×",
        "—",
        None,
    ),
    Ratio(
        "h busiest worker's share of the workers' CPU time (--workers 2)",
        ("h",),
        lambda r: r["h"]["busiest_share_w2"],
        "",
        "—",
        None,
    ),
    Ratio(
        "h′ pipelined ×8: hit throughput, --workers 2 / --workers 1 (c64)",
        ("h",),
        lambda r: r["h"]["rps_w2_pipe"] / r["h"]["rps_w1_pipe"],
        "×",
        "≥ 1.6",
        _at_least(1.6),
    ),
    Ratio(
        "h′ pipelined ×8: proxy CPU time per hit, --workers 2 / --workers 1",
        ("h",),
        lambda r: r["h"]["cpu_us_per_request_w2_pipe"] / r["h"]["cpu_us_per_request_w1_pipe"],
        "×",
        "—",
        None,
    ),
    Ratio(
        "h′ pipelined ×8: busiest worker's share of the workers' CPU time (--workers 2)",
        ("h",),
        lambda r: r["h"]["busiest_share_w2_pipe"],
        "",
        "—",
        None,
    ),
    Ratio(
        "h and h′: best --workers 2 throughput / best --workers 1 throughput, either wrk mode",
        ("h",),
        lambda r: max(r["h"]["rps_w2"], r["h"]["rps_w2_pipe"]) / max(r["h"]["rps_w1"], r["h"]["rps_w1_pipe"]),
        "×",
        "—",
        None,
    ),
)

ROW_TITLES = {
    "a": "a — bare ASGI app (ceiling)",
    "b": "b — llmcache hit, local tier",
    "l": "l — LiteLLM proxy hit, local cache",
    "c": "c — fake upstream direct, unique bodies",
    "d": "d — llmcache miss, local tier",
    "dd": "d′ — llmcache miss, local+disk tiers",
    "g": "g — llmcache hit, redis tier only",
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
    return (
        f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def revision() -> str:
    """The commit measured, flagged when the proxy's code differs from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "app"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if commit.returncode != 0:
        return "unknown"
    return commit.stdout.strip() + (" with uncommitted changes in app/" if dirty.stdout.strip() else "")


def render(
    results: Rounds,
    placement: Placement,
    rounds: int,
    duration_s: float,
    stream_requests: int,
    burst: int,
    others: OtherLoads | None = None,
    redone: int = 0,
) -> str:
    pin = "unpinned"
    if placement.server is not None:
        pin = f"server under test on CPU {placement.server}; wrk, clients and fake upstream on CPU {placement.load}"
        if "g" in results:
            pin += f"; g: Redis on CPU {placement.load}"
        if "h" in results:
            pin += f"; h: {placement.describe_scaling()}"
    lines = [
        f"# llmcache benchmark — {time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        f"- machine: {machine()}",
        f"- code: {revision()}",
        f"- placement: {pin}",
        f"- {rounds} round(s), rows alternated within each round; wrk runs {duration_s:g} s, -t1; medians over rounds",
        *_other_load(others or [], redone),
        "",
    ]
    lines += _wrk_table(results)
    lines += _stream_table(results, stream_requests, burst)
    lines += _redis_table(results)
    lines += _workers_table(results, duration_s, placement)
    lines += _ratio_table(results)
    lines += _round_detail(results)
    return "\n".join(lines) + "\n"


def _other_load(others: OtherLoads, redone: int) -> list[str]:
    """How much of the machine someone else used while each step ran."""
    if not others:
        return []
    worst = max(others, key=lambda item: item[2])
    line = (
        f"- other load (machine CPU time not used by the benchmark's own processes): median "
        f"{statistics.median(o[2] for o in others):.2f} CPUs over the steps, at most {worst[2]:.2f} "
        f"(round {worst[0]}, row {worst[1]})"
    )
    busy = [f"round {n} {row}: {cpus:.2f}" for n, row, cpus in others if cpus > OTHER_LOAD_NOTICE_CPUS]
    if busy:
        line += f"; steps above {OTHER_LOAD_NOTICE_CPUS} CPUs: " + ", ".join(busy)
    if redone:
        line += f"; {redone} round(s) discarded and run again because other load competed with them"
    return [line]


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def _wrk_table(results: Rounds) -> list[str]:
    rows = [row for row in ROW_TITLES if row in results]
    if not rows:
        return []
    out = [
        "## Request/response (wrk)",
        "",
        "| row | req/s, 32 conns | req/s, 1 conn | p50 ms, 1 conn | p99 ms, 1 conn |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
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
        out += [
            title,
            "",
            "| path | p50 ms | p99 ms |",
            "| --- | ---: | ---: |",
            f"| e — fake upstream direct | {_fmt(m['direct_p50_ms'], 3)} | {_fmt(m['direct_p99_ms'], 3)} |",
            f"| e — through llmcache | {_fmt(m['proxy_p50_ms'], 3)} | {_fmt(m['proxy_p99_ms'], 3)} |",
        ]
        if "proxy_p50_ms_short" in m:
            out += [
                f"| e′ — fake upstream direct, 2-token answer | {_fmt(m['direct_p50_ms_short'], 3)} "
                f"| {_fmt(m['direct_p99_ms_short'], 3)} |",
                f"| e′ — through llmcache, 2-token answer | {_fmt(m['proxy_p50_ms_short'], 3)} "
                f"| {_fmt(m['proxy_p99_ms_short'], 3)} |",
            ]
        out += [""]
    if "f" in results:
        m = median_figures(results["f"])
        out += [
            f"## Coalescing: {burst} identical streamed misses at once, upstream stalls 200 ms",
            "",
            "| upstream calls | leader TTFB ms | first-event spread ms (max − min) |",
            "| ---: | ---: | ---: |",
            f"| {m['upstream_calls']:.0f} | {_fmt(m['leader_ttfb_ms'], 1)} | {_fmt(m['spread_ms'], 2)} |",
            "",
        ]
    return out


def _redis_table(results: Rounds) -> list[str]:
    if "g" not in results:
        return []
    m = median_figures(results["g"])
    header = (
        "| local-tier hit p50 ms (b, in g's step) | Redis-tier hit p50 ms | Redis GET p50 ms, from the proxy's "
        "CPU | Redis GET p50 ms, same CPU as Redis | proxy CPU µs per local-tier hit | per Redis-tier hit |"
    )
    cells = (
        _fmt(m["local_p50_ms"], 3),
        _fmt(m["p50_ms"], 3),
        _fmt(m["rtt_p50_ms"], 3),
        _fmt(m["rtt_same_cpu_p50_ms"], 3),
        _fmt(m["local_cpu_us_per_hit"], 1),
        _fmt(m["cpu_us_per_hit"], 1),
    )
    return [
        "## Redis tier: one connection, the same request as b",
        "",
        header,
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        "| " + " | ".join(cells) + " |",
        "",
    ]


def _workers_table(results: Rounds, duration_s: float, placement: Placement) -> list[str]:
    if "h" not in results:
        return []
    m = median_figures(results["h"])
    header = (
        "| server | wrk | req/s | proxy CPU µs per hit | proxy CPUs busy | wrk CPUs busy | wrk CPU µs per "
        "request | machine CPUs idle | busiest worker's CPU share | busiest worker's connections |"
    )
    where = placement.describe_scaling() if placement.server is not None else "unpinned"
    out = [
        f"## Workers: hit throughput, wrk -t1 -c64 -d{duration_s:g}s, {where}",
        "",
        header,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for suffix, wrk in (("", "one request at a time"), ("_pipe", "h′: pipelined, 8 per batch")):
        for count in (1, 2):
            end = f"_w{count}{suffix}"
            if f"rps{end}" not in m:
                continue
            cells = (
                _fmt(m[f"rps{end}"], 0),
                _fmt(m[f"cpu_us_per_request{end}"], 1),
                _fmt(m[f"proxy_cores{end}"], 2),
                _fmt(m[f"wrk_cores{end}"], 2),
                _fmt(m.get(f"wrk_cpu_us_per_request{end}"), 1),
                _fmt(m[f"idle_cores{end}"], 2),
                _fmt(m[f"busiest_share{end}"], 2),
                f"{m[f'busiest_connections{end}']:.0f} of {m[f'connections{end}']:.0f}",
            )
            out.append(f"| `--workers {count}` | {wrk} | " + " | ".join(cells) + " |")
    return out + [""]


def _ratio_table(results: Rounds) -> list[str]:
    out = [
        "## Side-by-side figures (median of per-round values)",
        "",
        "| figure | value | per round | target | result |",
        "| --- | ---: | --- | --- | --- |",
    ]
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
            text = ", ".join(
                f"{k}={_fmt(v, 0 if k.startswith(('rps', 'upstream', 'busiest_conn', 'connections')) else 3)}"
                for k, v in figures.items()
            )
            out.append(f"| {row} | {number} | {text} |")
    return out + ["", "</details>"]
