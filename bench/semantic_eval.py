"""Accuracy of the semantic match decision, offline: plain cosine vs cosine + the guard.

    .venv/bin/python -m bench.semantic_eval              # dev sweep + dev and test at the defaults
    .venv/bin/python -m bench.semantic_eval --sweep-only # the dev sweep alone (what defaults are chosen on)

The protocol that keeps the test figures honest: every threshold and rule constant is
chosen on the DEV sets only (`legacy_dev`, the 862 pairs the first rules were written
against, plus `en_dev` and `ml_dev`); the sweep below reads nothing else. The TEST sets
(`en_test`, `ml_test`) are evaluated once, at the product's defaults, and printed beside
dev. The product's HTTP API gives the same decisions (`bench/semantic_http_eval.py`
measures them end to end and is what CI gates on); this script is the fast loop.

A hit: cosine >= threshold and, for the guarded column, no guard rule vetoes (the
product's own `Guard` with its default rules and the in-process embedder). Precision =
right hits / hits; recall = paraphrases served / paraphrases; near-miss rate =
near-misses served / near-misses (negatives other than `unrelated`).
Embeddings are cached in bench/results/semantic_embeddings.npz, keyed by model file and text.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.config import LOCAL_MODEL_THRESHOLDS
from app.semantic.embedder import LocalEmbedder
from app.semantic.guard import Guard, default_rules
from app.semantic.guard.rules import OTHER_LANGUAGE_FLOOR, SUBSTITUTION_THRESHOLD

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data" / "semantic"
RESULTS = ROOT / "results"
CACHE = RESULTS / "semantic_embeddings.npz"
REPORT = RESULTS / "semantic.md"
MODEL = "all-MiniLM-L6-v2"
DEV = ("legacy_dev", "en_dev", "ml_dev")
TEST = ("en_test", "ml_test")
GRID = [round(0.70 + 0.025 * i, 3) for i in range(9)]  # 0.70 .. 0.90


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    same: bool
    kind: str
    lang: str = "en"

    @property
    def near_miss(self) -> bool:
        return not self.same and self.kind != "unrelated"


@dataclass(frozen=True)
class Score:
    hits: int
    precision: float | None  # None: nothing served
    recall: float
    near_miss_rate: float


def load(name: str) -> list[Pair]:
    rows = [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return [Pair(r["a"], r["b"], bool(r["same"]), str(r["kind"]), str(r.get("lang", "en"))) for r in rows]


class Embeddings:
    """Vectors of the in-process model, cached on disk by model identity and text."""

    def __init__(self) -> None:
        self.model = LocalEmbedder(MODEL)
        self.identity = repr(self.model)
        self.vectors: dict[str, np.ndarray] = {}
        if CACHE.exists():
            with np.load(CACHE) as z:
                self.vectors = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
        self.added = 0

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.identity}\0{text}".encode()).hexdigest()[:32]

    def many(self, texts: list[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in self.vectors}.items())
        for i in range(0, len(missing), 64):
            chunk = missing[i : i + 64]
            for (k, _), v in zip(chunk, self.model.embed_many([t for _, t in chunk]), strict=True):
                self.vectors[k] = np.asarray(v, dtype=np.float32)
        self.added += len(missing)
        return np.stack([self.vectors[k] for k in keys]) if keys else np.zeros((0, 384), np.float32)

    def save(self) -> None:
        if self.added:
            RESULTS.mkdir(parents=True, exist_ok=True)
            keys = sorted(self.vectors)
            np.savez(CACHE, keys=np.array(keys), vectors=np.stack([self.vectors[k] for k in keys]))


def score(pairs: list[Pair], served: list[bool]) -> Score:
    hits = sum(served)
    right = sum(s and p.same for p, s in zip(pairs, served, strict=True))
    paraphrases = sum(p.same for p in pairs)
    near = [s for p, s in zip(pairs, served, strict=True) if p.near_miss]
    return Score(hits, right / hits if hits else None, right / max(paraphrases, 1), sum(near) / max(len(near), 1))


def decide(pairs: list[Pair], cos: np.ndarray, threshold: float, veto: Callable[[Pair, float], bool]) -> list[bool]:
    return [bool(c >= threshold) and not veto(p, float(c)) for p, c in zip(pairs, cos, strict=True)]


def _fmt(s: Score) -> str:
    precision = "—" if s.precision is None else f"{s.precision:.3f}"
    return f"{precision} | {s.recall:.3f} | {s.near_miss_rate:.3f} | {s.hits}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep-only", action="store_true")
    args = ap.parse_args(argv)
    emb = Embeddings()
    guard = Guard(default_rules(OTHER_LANGUAGE_FLOOR, SUBSTITUTION_THRESHOLD, emb.many))
    default = LOCAL_MODEL_THRESHOLDS[MODEL.lower()]

    def vetoed(p: Pair, c: float) -> bool:
        return guard.veto(p.a, p.b, c) is not None

    sets = {name: load(name) for name in DEV + (() if args.sweep_only else TEST)}
    cosines = {}
    for name, pairs in sets.items():
        a, b = emb.many([p.a for p in pairs]), emb.many([p.b for p in pairs])
        cosines[name] = np.einsum("ij,ij->i", a, b)
    emb.save()

    out: list[str] = ["# Semantic accuracy (offline, in-process embedder)\n"]
    w = out.append
    w(f"Model `{MODEL}` ({emb.identity}); guard: the product's default rules; default threshold {default}.\n")
    w("## Dev sweep (what the defaults are chosen on)\n")
    w(
        "| set | threshold | plain P | plain R | plain near-miss | plain hits | guard P | guard R | guard near-miss | guard hits |"
    )
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in DEV:
        pairs, cos = sets[name], cosines[name]
        for t in GRID:
            plain = score(pairs, decide(pairs, cos, t, lambda p, c: False))
            guarded = score(pairs, decide(pairs, cos, t, vetoed))
            w(f"| {name} | {t:.3f} | {_fmt(plain)} | {_fmt(guarded)} |")
    if not args.sweep_only:
        w(f"\n## Dev and test at the defaults (threshold {default}, guard on)\n")
        w("| set | pairs | precision | recall | near-miss rate | hits |")
        w("|---|---:|---:|---:|---:|---:|")
        for name, pairs in sets.items():
            w(f"| {name} | {len(pairs)} | {_fmt(score(pairs, decide(pairs, cosines[name], default, vetoed)))} |")
    text = "\n".join(out) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
