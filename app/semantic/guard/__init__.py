"""Paraphrase guard: explainable vetoes on top of embedding similarity.

    guard = Guard(default_rules(unreadable_threshold=0.97))
    guard.veto(asked, cached, similarity) -> RuleName | None   # the first rule that fires

`analysis.py` reads a question once (cached), `rules.py` holds one class per rule,
`lexicon.py` loads the word lists (JSON data), `language.py` tells the language.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.semantic.guard.analysis import Analysis, analyse
from app.semantic.guard.rules import DEFAULT_RULES, Rule, RuleName, default_rules

__all__ = ["Analysis", "Guard", "Rule", "RuleName", "analyse", "compatible", "default_rules", "mismatch"]


class Guard:
    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)

    def veto(self, asked: str, cached: str, similarity: float) -> RuleName | None:
        """The first rule that tells the two questions apart, or None."""
        if asked == cached:
            return None
        return self.veto_analysed(analyse(asked), analyse(cached), similarity)

    def veto_analysed(self, a: Analysis, b: Analysis, similarity: float) -> RuleName | None:
        for rule in self.rules:
            if rule.applies(a, b) and rule.vetoes(a, b, similarity):
                return rule.name
        return None


_DEFAULT = Guard(DEFAULT_RULES)


def mismatch(asked: str, cached: str, similarity: float = 1.0) -> RuleName | None:
    """The default guard's veto (similarity 1.0: only the rules that need no score decide)."""
    return _DEFAULT.veto(asked, cached, similarity)


def compatible(asked: str, cached: str, similarity: float = 1.0) -> bool:
    return mismatch(asked, cached, similarity) is None
