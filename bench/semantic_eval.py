"""Accuracy of the semantic cache's match decision: plain cosine vs cosine + guard.

    .venv/bin/python -m bench.semantic_eval            # about 30 s cold, 2 s with cached embeddings
    .venv/bin/python -m bench.semantic_eval --no-cache # re-embed everything

Reads the labelled pairs of ``bench/data/semantic_pairs.jsonl`` ({"a", "b", "same", "kind"}),
embeds both texts with the in-process ``LocalEmbedder("all-MiniLM-L6-v2")`` and, for each
threshold 0.70, 0.72, ..., 0.98, counts a cache hit when

    (a) plain cosine:   cos(a, b) >= threshold          (what LiteLLM / GPTCache do)
    (b) cosine + guard: cos(a, b) >= threshold and app.semantic.guard.compatible(a, b)

and reports precision (share of hits that are right), recall (share of paraphrases served)
and the false-hit rate on hard negatives (negatives other than kind "unrelated": the
near-misses that a cache must not serve). A wrong hit serves a wrong answer, a missed
paraphrase only costs an upstream call, hence the precision target of 0.97.

The recommended default threshold is the one with the highest recall whose precision is
>= 0.97 *with a margin*: precision must also stay >= 0.97 one grid step (0.02) lower, so
that a small drift of the score distribution on real traffic does not fall below target.

Embeddings are cached in ``bench/results/semantic_embeddings.npz`` (git-ignored), keyed
by model and text. The report is printed and written to ``bench/results/semantic.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.semantic.guard import mismatch

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data" / "semantic_pairs.jsonl"
RESULTS = ROOT / "results"
CACHE = RESULTS / "semantic_embeddings.npz"
REPORT = RESULTS / "semantic.md"
MODEL = "all-MiniLM-L6-v2"
TARGET = 0.97
GRID = [round(0.70 + 0.02 * i, 2) for i in range(15)]  # 0.70 .. 0.98
FINE = [round(0.50 + 0.0025 * i, 4) for i in range(200)]  # 0.50 .. 0.9975, for the best-recall search


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    same: bool
    kind: str


@dataclass(frozen=True)
class Point:
    threshold: float
    hits: int
    true_hits: int
    precision: float | None  # None when nothing is served
    recall: float
    hard_false_rate: float


def load_pairs(path: Path) -> list[Pair]:
    pairs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row.get("same"), bool) or not row.get("a") or not row.get("b"):
            raise ValueError(f"{path}:{n}: need non-empty a, b and a boolean same")
        pairs.append(Pair(row["a"], row["b"], row["same"], row.get("kind", "?")))
    return pairs


def _key(text: str) -> str:
    return hashlib.sha256(f"{MODEL}\0{text}".encode()).hexdigest()[:24]


def embed_all(texts: list[str], use_cache: bool) -> tuple[np.ndarray, int, float]:
    """(n, dims) L2-normalised rows; also how many texts were embedded now and how long it took."""
    cached: dict[str, np.ndarray] = {}
    if use_cache and CACHE.exists():
        with np.load(CACHE) as z:
            cached = dict(zip(z["keys"].tolist(), z["vectors"]))
    keys = [_key(t) for t in texts]
    missing = sorted({k: t for k, t in zip(keys, texts) if k not in cached}.items())
    took = 0.0
    if missing:
        try:
            from app.semantic.embedder import LocalEmbedder
        except ImportError as exc:  # pragma: no cover - depends on the other module
            sys.exit(f"cannot import app.semantic.embedder.LocalEmbedder: {exc}")
        embedder = LocalEmbedder(MODEL)
        start = time.perf_counter()
        batch = 64
        # similar lengths per batch: less padding, faster forward passes
        missing.sort(key=lambda kt: len(kt[1]))
        for i in range(0, len(missing), batch):
            chunk = missing[i : i + batch]
            vecs = embedder.embed_sync([t for _, t in chunk])
            for (k, _), v in zip(chunk, vecs):
                cached[k] = np.asarray(v, dtype=np.float32)
        took = time.perf_counter() - start
        if use_cache:
            RESULTS.mkdir(parents=True, exist_ok=True)
            ks = sorted(cached)
            np.savez(CACHE, keys=np.array(ks), vectors=np.stack([cached[k] for k in ks]))
    return np.stack([cached[k] for k in keys]), len(missing), took


def curve(
    cos: np.ndarray, accept: np.ndarray, same: np.ndarray, hard: np.ndarray, thresholds: list[float]
) -> list[Point]:
    points = []
    n_pos, n_hard = int(same.sum()), int(hard.sum())
    for t in thresholds:
        hit = (cos >= t) & accept
        hits, true_hits = int(hit.sum()), int((hit & same).sum())
        points.append(
            Point(
                threshold=t,
                hits=hits,
                true_hits=true_hits,
                precision=true_hits / hits if hits else None,
                recall=true_hits / n_pos if n_pos else 0.0,
                hard_false_rate=int((hit & hard).sum()) / n_hard if n_hard else 0.0,
            )
        )
    return points


def best_at_target(points: list[Point]) -> Point | None:
    """Highest recall among thresholds whose precision reaches the target."""
    ok = [p for p in points if p.precision is not None and p.precision >= TARGET and p.true_hits > 0]
    return max(ok, key=lambda p: (p.recall, -p.threshold)) if ok else None


def recommend(points: list[Point]) -> Point | None:
    """Best recall at precision >= target that also holds one grid step lower (the margin)."""
    good = [p.precision is not None and p.precision >= TARGET for p in points]
    ok = [p for i, p in enumerate(points) if good[i] and i > 0 and good[i - 1] and p.true_hits > 0]
    return max(ok, key=lambda p: (p.recall, -p.threshold)) if ok else None


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n: how far a precision measured on a
    few hundred pairs may be from the true one."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return centre - half, centre + half


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=REPORT)
    ap.add_argument("--no-cache", action="store_true", help="re-embed every text, do not read or write the cache")
    args = ap.parse_args(argv)

    pairs = load_pairs(args.data)
    texts = sorted({t for p in pairs for t in (p.a, p.b)})
    index = {t: i for i, t in enumerate(texts)}
    vecs, n_embedded, embed_s = embed_all(texts, use_cache=not args.no_cache)
    ia = np.array([index[p.a] for p in pairs])
    ib = np.array([index[p.b] for p in pairs])
    cos = np.einsum("ij,ij->i", vecs[ia], vecs[ib]).astype(np.float64)

    # Guard: signatures once per text (as the cache would store them), then comparisons.
    t0 = time.perf_counter()
    sigs = {t: signature.__wrapped__(t) for t in texts}
    sig_us = (time.perf_counter() - t0) / len(texts) * 1e6
    t0 = time.perf_counter()
    reasons = [mismatch_signatures(sigs[p.a], sigs[p.b]) for p in pairs]
    cmp_us = (time.perf_counter() - t0) / len(pairs) * 1e6
    guard_ok = np.array([r is None for r in reasons])
    assert all(compatible_signatures(sigs[p.a], sigs[p.b]) == (r is None) for p, r in zip(pairs, reasons))

    same = np.array([p.same for p in pairs])
    hard = np.array([(not p.same) and p.kind != "unrelated" for p in pairs])
    everything = np.ones(len(pairs), dtype=bool)

    plain = curve(cos, everything, same, hard, GRID)
    guarded = curve(cos, guard_ok, same, hard, GRID)
    plain_fine = curve(cos, everything, same, hard, FINE)
    guarded_fine = curve(cos, guard_ok, same, hard, FINE)
    rec = recommend(guarded)

    out: list[str] = []
    w = out.append
    kinds = Counter(p.kind for p in pairs)
    n_pos, n_neg = int(same.sum()), int((~same).sum())
    w("# Semantic cache accuracy: plain cosine vs cosine + guard\n")
    w(
        f"{len(pairs)} labelled pairs from `{args.data.relative_to(ROOT.parent) if args.data.is_relative_to(ROOT.parent) else args.data}`: "
        f"{n_pos} paraphrases ({n_pos / len(pairs):.0%}), {n_neg} negatives of which {int(hard.sum())} hard "
        f"(every kind but `unrelated`). Embedder: in-process `{MODEL}`"
        + (
            f" ({n_embedded} texts embedded in {embed_s:.1f} s, the rest from the cache)."
            if n_embedded
            else " (all embeddings from the cache)."
        )
    )
    w(
        "\nA hit is served when cosine >= threshold, and for (b) also when `guard.compatible()` accepts the pair. "
        "Precision = right hits / hits; recall = paraphrases served / paraphrases; "
        "hard false-hit rate = hard negatives served / hard negatives.\n"
    )
    w(
        "| threshold | (a) precision | (a) recall | (a) hard false hits | (b) precision | (b) recall | (b) hard false hits |"
    )
    w("|---:|---:|---:|---:|---:|---:|---:|")
    for p, g in zip(plain, guarded):
        mark = " **←**" if rec is not None and g.threshold == rec.threshold else ""
        w(
            f"| {p.threshold:.2f}{mark} | {_fmt(p.precision)} | {p.recall:.3f} | {p.hard_false_rate:.3f} "
            f"| {_fmt(g.precision)} | {g.recall:.3f} | {g.hard_false_rate:.3f} |"
        )

    w(f"\n## Best recall at precision >= {TARGET}\n")
    w("| method | on the 0.02 grid | on a 0.0025 grid (0.50–0.9975) |")
    w("|---|---|---|")
    for name, coarse, fine in (("(a) plain cosine", plain, plain_fine), ("(b) cosine + guard", guarded, guarded_fine)):
        cells = []
        for pts in (coarse, fine):
            b = best_at_target(pts)
            cells.append(
                "not reachable"
                if b is None
                else f"recall {b.recall:.3f} (precision {_fmt(b.precision)}, threshold {b.threshold:g})"
            )
        w(f"| {name} | {cells[0]} | {cells[1]} |")
    top = max((p for p in plain_fine if p.precision is not None and p.hits >= 20), key=lambda p: p.precision or 0.0)
    w(
        f"\nPlain cosine's best precision anywhere (0.0025 grid, at least 20 hits): {_fmt(top.precision)} at "
        f"threshold {top.threshold:g} (recall {top.recall:.3f}): the near-misses score as high as the paraphrases."
    )

    w("\n## Recommended default\n")
    if rec is None:
        w(f"No threshold of the grid reaches precision {TARGET} with a one-step margin for cosine + guard.")
    else:
        below = guarded[guarded.index(rec) - 1]
        w(
            f"**similarity_threshold = {rec.threshold:.2f} with the guard on**: the highest recall on the grid whose "
            f"precision is >= {TARGET} and stays >= {TARGET} one step lower (at {below.threshold:.2f}: precision "
            f"{_fmt(below.precision)}), as a margin against drift. At {rec.threshold:.2f}: precision "
            f"{_fmt(rec.precision)}, recall {rec.recall:.3f}, hard false-hit rate {rec.hard_false_rate:.3f} "
            f"({rec.hits - rec.true_hits} wrong hits of {rec.hits}; 95% Wilson interval of the precision "
            f"{_wilson(rec.true_hits, rec.hits)[0]:.3f}–{_wilson(rec.true_hits, rec.hits)[1]:.3f})."
        )
        same_t = next(p for p in plain if p.threshold == rec.threshold)
        w(
            f"Plain cosine at the same threshold: precision {_fmt(same_t.precision)}, recall {same_t.recall:.3f}, "
            f"hard false-hit rate {same_t.hard_false_rate:.3f}."
        )

    # Per kind at the recommended threshold: who is served.
    t_rec = rec.threshold if rec is not None else 0.9
    w(f"\n## By kind at threshold {t_rec:.2f}\n")
    w(
        "Paraphrase kinds: share served (recall). Negative kinds: share served (false hits). Guard alone: share the guard accepts.\n"
    )
    w("| kind | pairs | guard accepts | (a) served | (b) served |")
    w("|---|---:|---:|---:|---:|")
    over = cos >= t_rec
    for kind in sorted(kinds, key=lambda k: (not any(p.same for p in pairs if p.kind == k), k)):
        m = np.array([p.kind == kind for p in pairs])
        n = int(m.sum())
        w(
            f"| {kind} | {n} | {(guard_ok & m).sum() / n:.2f} | {(over & m).sum() / n:.2f} | {(over & guard_ok & m).sum() / n:.2f} |"
        )
    rej = Counter(r for r, p in zip(reasons, pairs) if r is not None and not p.same)
    w("\nGuard vetoes on negatives by rule: " + ", ".join(f"{k} {v}" for k, v in rej.most_common()) + ".")

    wrong = [(c, pair) for c, pair, g in zip(cos, pairs, guard_ok) if g and c >= t_rec and not pair.same]
    w(f"\n### Wrong hits of cosine + guard at {t_rec:.2f} ({len(wrong)})\n")
    for c, pair in sorted(wrong, key=lambda x: -x[0]):
        w(f"- {c:.3f} `{pair.kind}`: {pair.a!r} / {pair.b!r}")
    vetoed = [(c, pair, r) for c, pair, r in zip(cos, pairs, reasons) if pair.same and r is not None]
    w(f"\n### Paraphrases the guard rejects ({len(vetoed)} of {n_pos})\n")
    for c, pair, r in sorted(vetoed, key=lambda x: -x[0]):
        w(f"- {c:.3f} ({r}): {pair.a!r} / {pair.b!r}")

    w(
        f"\nGuard cost on this machine: {sig_us:.0f} µs per signature (once per text; the cache can store it), "
        f"{cmp_us:.1f} µs per comparison of two signatures."
    )
    report = "\n".join(out) + "\n"
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    print(f"(written to {args.out})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
