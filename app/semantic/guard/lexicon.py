"""The guard's word lists, read once from the JSON files beside this module.

Lexicons are data: ``english.json`` holds what the English rules look for (stop words,
names, units, number words, negation cues, opposite pairs, relation markers, spelling
aliases), ``languages.json`` the function words and negation cues that tell which
language a question is in. Editing a list never needs a code change; the derived
indexes (word -> opposite group, surface form -> unit, alias regexes) are built here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ENGLISH", "LANGUAGES", "Alias", "English", "Languages"]

_HERE = Path(__file__).resolve().parent


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((_HERE / name).read_text(encoding="utf-8"))
    return data


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _split_top(pattern: str) -> list[str]:
    """Split a regex on its top-level "|"."""
    parts: list[str] = []
    depth, cur, i = 0, [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            cur.append(pattern[i : i + 2])
            i += 2
            continue
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        if c == "|" and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def triggers(pattern: str) -> list[str] | None:
    """Literal lower-case prefixes, one of which any match must contain; None if unknown.

    Lets the ~70 aliases skip texts that cannot match (most do not): a substring test is
    far cheaper than a regex pass."""
    out: list[str] = []
    for alt in _split_top(pattern):
        alt = re.sub(r"^(?:\\b|\(\?<!?[^)]*\))+", "", alt)
        if alt.startswith("(?:") or (alt.startswith("(") and not alt.startswith("(?")):
            depth, j = 0, 0
            for j, c in enumerate(alt):  # noqa: B007  # j is read after the loop: where it stopped
                depth += c == "("
                depth -= c == ")"
                if depth == 0:
                    break
            if alt[j + 1 : j + 2] in ("?", "*"):
                return None  # optional group: its words need not be there
            inner = triggers(alt[3 if alt.startswith("(?:") else 1 : j])
            if inner is None:
                return None
            out += inner
            continue
        m = re.match(r"[a-z0-9#$€£¥₹%°'.]+|\\\$", alt, re.I)
        if not m:
            return None
        lit = m.group(0).replace("\\", "")
        # a quantifier after the literal makes its last character optional
        if len(alt) > m.end() and alt[m.end()] in "?*{":
            lit = lit[:-1]
        if not lit:
            return None
        out.append(lit.lower())
    return out


@dataclass(frozen=True, slots=True)
class Alias:
    """A spelling variant rewritten to one canonical word before analysis."""

    regex: re.Pattern[str]
    replacement: str
    triggers: tuple[str, ...] | None  # None: always try the regex


@dataclass(frozen=True, slots=True)
class English:
    stop_words: frozenset[str]
    not_names: frozenset[str]
    gazetteer: frozenset[str]
    aliases: tuple[Alias, ...]
    units: dict[str, str]  # surface form -> canonical unit
    unit_alternatives: dict[str, frozenset[str]]
    units_needing_quantity: frozenset[str]
    unit_abbreviations: frozenset[str]
    quantity_words: frozenset[str]
    small_numbers: dict[str, int]
    tens: dict[str, int]
    scales: dict[str, int]
    ordinals: dict[str, int]
    soft_numbers: dict[str, str]
    roman: dict[str, int]
    negations: frozenset[str]
    opposites: dict[str, tuple[tuple[str, str], ...]]  # word -> (group, side) pairs
    relation_markers: dict[str, str]
    clause_boundaries: frozenset[str]
    acronym_fillers: frozenset[str]
    degree_words: frozenset[str]
    wh_words: dict[str, str]
    how_kinds: dict[str, str]
    # (prefix, prefix) that make opposites of one stem: interior/exterior, upload/download
    antonym_prefixes: tuple[tuple[str, str], ...]
    # prefixes that negate a stem: install/uninstall, connect/disconnect, compress/decompress
    negating_prefixes: tuple[str, ...]


def _english(data: dict[str, Any]) -> English:
    groups: dict[str, dict[str, str]] = dict(data["opposites"])
    for verb in data["phrasal_verbs"].split():  # "zoom in" was joined to "zoomin" by an alias
        groups[f"phr_{verb}"] = {p: verb + p for p in ("in", "out", "up", "down")}
    opposites: dict[str, list[tuple[str, str]]] = {}
    for group, sides in groups.items():
        for side, words in sides.items():
            for word in words.split():
                opposites.setdefault(word, []).append((group, side))
    units = {form: canon for canon, forms in data["units"].items() for form in forms.split()}
    aliases = []
    for pattern, replacement, case_sensitive in data["aliases"]:
        found = triggers(pattern)
        regex = re.compile(pattern, 0 if case_sensitive else re.I)
        aliases.append(Alias(regex, replacement, None if found is None else tuple(found)))
    return English(
        stop_words=_words(data["stop_words"]),
        not_names=_words(data["not_names"]),
        gazetteer=_words(data["gazetteer"]),
        aliases=tuple(aliases),
        units=units,
        unit_alternatives={k: _words(v) for k, v in data["unit_alternatives"].items()},
        units_needing_quantity=_words(data["units_needing_quantity"]),
        unit_abbreviations=_words(data["unit_abbreviations"]),
        quantity_words=_words(data["quantity_words"]),
        small_numbers=dict(data["number_words"]),
        tens=dict(data["tens"]),
        scales=dict(data["scales"]),
        ordinals=dict(data["ordinals"]),
        soft_numbers=dict(data["soft_numbers"]),
        roman=dict(data["roman"]),
        negations=_words(data["negations"]),
        opposites={w: tuple(v) for w, v in opposites.items()},
        relation_markers=dict(data["relation_markers"]),
        clause_boundaries=frozenset(data["clause_boundaries"]),
        acronym_fillers=_words(data["acronym_fillers"]),
        degree_words=_words(data["degree_words"]),
        wh_words=dict(data["wh_words"]),
        how_kinds=dict(data["how_kinds"]),
        antonym_prefixes=tuple((a, b) for a, b in data["antonym_prefixes"]),
        negating_prefixes=tuple(data["negating_prefixes"].split()),
    )


@dataclass(frozen=True, slots=True)
class Languages:
    # language code -> function words that mark it (none shared with English)
    function_words: dict[str, frozenset[str]]
    # language code -> negation cues, looked for in any text of that language
    negations: dict[str, frozenset[str]]
    # negation suffixes (Turkish -me/-ma ...) are not lexicon words; see language.py
    english_function_words: frozenset[str]


def _languages(data: dict[str, Any]) -> Languages:
    return Languages(
        function_words={k: _words(v) for k, v in data["function_words"].items()},
        negations={k: _words(v) for k, v in data["negations"].items()},
        english_function_words=_words(data["english_function_words"]),
    )


ENGLISH = _english(_load("english.json"))
LANGUAGES = _languages(_load("languages.json"))
