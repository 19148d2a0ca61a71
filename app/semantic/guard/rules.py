"""The guard's rules: each one tells a near-miss from a paraphrase in one way.

A rule compares the analyses of the asked and the cached question (and their cosine
similarity) and says whether it vetoes the match. Rules only fire on an explicit
conflict — one side says A, the other not-A — never on a feature one side merely leaves
out, except where a paraphrase would not leave it out (a number, a name, a negation).
English rules run only when both questions are English (language.py); for any other
language the guard cannot read, `Unreadable` asks for a much stricter similarity.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from difflib import SequenceMatcher
from enum import StrEnum

import numpy as np

from app.semantic.guard.analysis import SUFFIX_PLUS, Analysis, name_found, stems, within_one_edit
from app.semantic.guard.lexicon import ENGLISH as L

__all__ = [
    "DEFAULT_RULES",
    "Direction",
    "Language",
    "Name",
    "Negation",
    "Number",
    "Opposite",
    "QuestionKind",
    "Rule",
    "RuleName",
    "Unit",
    "Unreadable",
]


# Where the rules cannot read the language, the same wording must also be this similar.
OTHER_LANGUAGE_FLOOR = 0.9
# A word swapped in an otherwise shared question needs this similarity (chosen on the
# dev split: docs/benchmarks.md, "Accuracy on pairs nobody tuned it on").
SUBSTITUTION_THRESHOLD = 0.93

# Texts -> their L2-normalised embeddings, one row each (called from a worker thread).
EmbedMany = Callable[[list[str]], np.ndarray]


class RuleName(StrEnum):
    LANGUAGE = "language"
    UNREADABLE = "unreadable"
    NUMBER = "number"
    NEGATION = "negation"
    UNIT = "unit"
    NAME = "name"
    OPPOSITE = "opposite"
    DIRECTION = "direction"
    QUESTION = "question"
    SUBSTITUTION = "substitution"
    EXPRESSION = "expression"
    BOUND = "bound"


class Rule(ABC):
    name: RuleName
    english_only: bool = True

    def applies(self, a: Analysis, b: Analysis) -> bool:
        return not self.english_only or (a.english and b.english)

    @abstractmethod
    def vetoes(self, a: Analysis, b: Analysis, similarity: float) -> bool:
        """True when `a` and `b` cannot be paraphrases of each other."""


class Language(Rule):
    """A question in another language needs an answer in that language."""

    name = RuleName.LANGUAGE
    english_only = False

    def vetoes(self, a: Analysis, b: Analysis, similarity: float) -> bool:
        return a.language != b.language


class Unreadable(Rule):
    """Where the English rules cannot read a question, only the same wording may match.

    The embedding ranks near-misses in other languages above their paraphrases (one
    changed word or suffix is one subword among many), so no similarity threshold is
    safe: the words must be the same, in the same order, up to case, accents and
    punctuation.
    `threshold` None refuses every semantic match between such questions."""

    name = RuleName.UNREADABLE
    english_only = False

    def __init__(self, threshold: float | None) -> None:
        self.threshold = threshold

    def vetoes(self, a: Analysis, b: Analysis, similarity: float) -> bool:
        if a.english and b.english:
            return False
        if self.threshold is None or similarity < self.threshold:
            return True
        return not same_wording(a.wording, b.wording)


def same_wording(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    # No typo tolerance: in a language the rules cannot read, one letter may be grammar
    # (Turkish "gönderiyor" / "göndermiyor": sends / does not send).
    return a == b


class Number(Rule):
    """Each unambiguous number on one side must be on the other ("Python 3.8" vs "3.12")."""

    name = RuleName.NUMBER
    english_only = False  # digits read the same in every language

    def vetoes(self, a: Analysis, b: Analysis, similarity: float) -> bool:
        return not a.numbers <= (b.numbers | b.soft_numbers) or not b.numbers <= (a.numbers | a.soft_numbers)


class Negation(Rule):
    """ "is X safe" vs "is X not safe"; in other languages, by that language's cues."""

    name = RuleName.NEGATION
    english_only = False

    def vetoes(self, a: Analysis, b: Analysis, similarity: float) -> bool:
        if a.english and b.english:
            return a.negated != b.negated
        return a.foreign_negations != b.foreign_negations


class Unit(Rule):
    """A unit or currency tied to a quantity must be on the other side ("5 km" vs "5 miles")."""

    name = RuleName.UNIT

    def vetoes(self, a: Analysis, b: Analysis, similarity: float) -> bool:
        return self._missing(a, b) or self._missing(b, a)

    @staticmethod
    def _missing(x: Analysis, y: Analysis) -> bool:
        alternatives = L.unit_alternatives
        for unit in x.units:
            if alternatives.get(unit, frozenset((unit,))) & y.units_any:
                continue
            if not any(u in alternatives and unit in alternatives[u] for u in y.units_any):
                return True
        return False


class Name(Rule):
    """Every name on one side is on the other, up to a typo ("capital of France/Germany")."""

    name = RuleName.NAME

    def vetoes(self, a: Analysis, b: Analysis, similarity: float) -> bool:
        return any(not name_found(n, b) for n in a.names) or any(not name_found(n, a) for n in b.names)


class Expression(Rule):
    """Both sides write an expression, with other operators ("2x + 6" vs "2x - 6", "j7" vs "j7+")."""

    name = RuleName.EXPRESSION
    english_only = False

    def vetoes(self, a: Analysis, b: Analysis, similarity: float) -> bool:
        if a.operators == b.operators:
            return False
        # "2^10" vs "2 to the power of 10" is one expression written two ways; a "+" after a
        # name is never spelled out.
        return bool(a.operators and b.operators) or SUFFIX_PLUS in a.operators or SUFFIX_PLUS in b.operators


class Opposite(Rule):
    """Both sides use a pair of opposites, on different sides (encrypt/decrypt, max/min):
    from the opposite-pair lexicon, or a word the other side has with an opposite or
    negating prefix (interior/exterior, upload/download, install/uninstall)."""

    name = RuleName.OPPOSITE

    def vetoes(self, a: Analysis, b: Analysis, similarity: float) -> bool:
        only_a, only_b, _ = unmatched(a.content, b.content)
        if any(prefixed_opposites(u, v) for u in only_a for v in only_b):
            return True
        if a.opposites == b.opposites:
            return False
        sides_a: dict[str, set[str]] = {}
        sides_b: dict[str, set[str]] = {}
        for group, side in a.opposites:
            sides_a.setdefault(group, set()).add(side)
        for group, side in b.opposites:
            sides_b.setdefault(group, set()).add(side)
        return any(sides_a[g] != sides_b[g] for g in sides_a.keys() & sides_b.keys())


class Direction(Rule):
    """ "X to Y" vs "Y to X", "A faster than B" vs "B faster than A"."""

    name = RuleName.DIRECTION

    def vetoes(self, a: Analysis, b: Analysis, similarity: float) -> bool:
        if not (a.relations and b.relations):
            return False
        # a relation both sides state in the same order too (a text comparing both ways)
        # is not reversed
        return any(
            (cls, right, left) in b.relations
            and (cls, left, right) not in b.relations
            and (cls, right, left) not in a.relations
            for cls, left, right in a.relations
        )


class QuestionKind(Rule):
    """ "who invented X" vs "when was X invented", "how old" vs "how tall". A kind asked on
    one side only is no conflict: "where can I see my IP" asks what "how do I find my IP" asks."""

    name = RuleName.QUESTION

    SPECIFIC = frozenset(("where", "when", "who", "whom", "whose", "why"))

    def vetoes(self, a: Analysis, b: Analysis, similarity: float) -> bool:
        if a.wh and b.wh and not (a.wh & b.wh):
            return True
        # "what is X" vs "where is X": the same words asked with another question word
        # (how/what/which swap freely in paraphrases; where/when/who/why do not)
        if a.lead == b.lead or not ({a.lead, b.lead} & self.SPECIFIC):
            return False
        if a.lead in b.words or b.lead in a.words:
            return False  # "When baking, why does dough rise?" = "Why does dough rise when baking?"
        return set(a.content) == set(b.content)


class Bound(Rule):
    """A bound on a number on one side only, or another: "a sum of 7" vs "7 or more",
    "under $500" vs "over $500"."""

    name = RuleName.BOUND

    def vetoes(self, a: Analysis, b: Analysis, similarity: float) -> bool:
        return a.bounds != b.bounds


def _related(u: str, v: str) -> bool:
    """The same word up to inflection or a typo ("sorted"/"sorting", "recieve"/"receive")."""
    if u == v:
        return True
    if set(stems(u)) & set(stems(v)):
        return True
    if not within_one_edit(u, v) or u[0] != v[0]:
        return False
    # a typo: one edit in a word of four letters or more, or a letter dropped from a
    # short one ("pur"/"purr"); "cat"/"car" is two words
    return min(len(u), len(v)) >= 4 or len(u) != len(v)


def prefixed_opposites(u: str, v: str) -> bool:
    """u and v are one stem under opposite prefixes, or one is the other negated."""
    if len(u) > len(v):
        u, v = v, u
    for prefix in L.negating_prefixes:
        if v == prefix + u and len(u) >= 4:
            return True
    for p, q in L.antonym_prefixes:
        for x, y in ((p, q), (q, p)):
            if u.startswith(x) and v.startswith(y) and u[len(x) :] == v[len(y) :] and len(u) - len(x) >= 3:
                return True
    return False


def unmatched(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[list[str], list[str], int]:
    """Content words of each side with no counterpart on the other, and how many matched."""
    only_a = [u for u in a if not any(_related(u, v) for v in b)]
    only_b = [v for v in b if not any(_related(u, v) for u in a)]
    return only_a, only_b, len(a) - len(only_a)


class Substitution(Rule):
    """One thing swapped for another in an otherwise shared question: apple/banana,
    France/Germany, "at the bottom"/"at the top" in a long prompt.

    Where a few content words of one question stand in place of others (a replacement
    in the aligned word sequences, or a word on each side without counterpart), the
    similarity of the embedding reflects only the swapped words: a synonym keeps it near
    1 ("fix"/"repair" my bike: 0.96), another thing of the same kind does not
    ("boiling"/"freezing" point: 0.73, cats/dogs: 0.80). Such pairs need `threshold`.
    In a text of several sentences the whole text's similarity hardly moves with one
    word, so the sentences holding the swap are compared on their own (`embed`); with
    no embedder at hand, a swap in a multi-sentence text is vetoed."""

    name = RuleName.SUBSTITUTION

    def __init__(
        self, threshold: float, embed: EmbedMany | None = None, max_swapped: int = 2, max_edits: int = 2
    ) -> None:
        self.threshold = threshold
        self.embed = embed
        self.max_swapped = max_swapped
        self.max_edits = max_edits

    def vetoes(self, a: Analysis, b: Analysis, similarity: float) -> bool:
        swaps = self._swaps(a, b)
        if not swaps:
            return False
        if len(a.sentences) <= 1 and len(b.sentences) <= 1:
            return similarity < self.threshold
        if self.embed is None:
            return True
        pairs = sorted({(_sentence(a, i), _sentence(b, j)) for i, j in swaps})
        vectors = self.embed([text for pair in pairs for text in pair])
        return any(float(vectors[2 * k] @ vectors[2 * k + 1]) < self.threshold for k in range(len(pairs)))

    def _swaps(self, a: Analysis, b: Analysis) -> list[tuple[int, int]]:
        """(content index in a, content index in b) of each place where words were swapped."""
        only_a, only_b, shared = unmatched(a.content, b.content)
        if shared == 0:
            return []
        swaps: list[tuple[int, int]] = []
        # In one sentence, a rewording replaces words too: only a word on each side
        # without counterpart is a swap there. In several sentences, a replacement among
        # aligned sentences is, even when the words reappear elsewhere (bottom/top).
        single = len(a.sentences) <= 1 and len(b.sentences) <= 1
        opcodes = [] if single else SequenceMatcher(None, a.content, b.content, autojunk=False).get_opcodes()
        edits = [op for op in opcodes if op[0] != "equal"]
        if len(edits) > self.max_edits:
            opcodes = []  # reworded throughout, not one detail edited: for the other rules
        for op, i1, i2, j1, j2 in opcodes:
            if op != "replace" or i2 - i1 > self.max_swapped or j2 - j1 > self.max_swapped:
                continue
            if not all(any(_related(u, v) for v in b.content[j1:j2]) for u in a.content[i1:i2]):
                swaps.append((i1, j1))
        if not swaps and only_a and only_b and len(only_a) <= self.max_swapped and len(only_b) <= self.max_swapped:
            swaps.append((a.content.index(only_a[0]), b.content.index(only_b[0])))
        return swaps


def _sentence(x: Analysis, content_index: int) -> str:
    index = x.content_sentences[content_index]
    return x.sentences[index] if index < len(x.sentences) else " ".join(x.sentences)


def default_rules(
    unreadable_threshold: float | None,
    substitution_threshold: float = SUBSTITUTION_THRESHOLD,
    embed: EmbedMany | None = None,
) -> tuple[Rule, ...]:
    """The rules in the order they are tried (cheapest and most certain first)."""
    return (
        Language(),
        Number(),
        Negation(),
        Unreadable(unreadable_threshold),
        Unit(),
        Name(),
        Opposite(),
        Direction(),
        QuestionKind(),
        Expression(),
        Bound(),
        Substitution(substitution_threshold, embed),
    )


DEFAULT_RULES = default_rules(OTHER_LANGUAGE_FLOOR)
