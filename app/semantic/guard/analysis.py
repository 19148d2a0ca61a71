"""One pass over a question: the features a paraphrase keeps, extracted once per text.

A sentence embedding scores "convert Celsius to Fahrenheit" and "convert Fahrenheit to
Celsius" at 0.99: it sees the same words in the same topic. What tells them apart is
extracted here, once per text (LRU-cached), and compared by the rules in rules.py:
numbers (digits, number words, ordinals, versions), negation cues, names (capitalised
terms, acronyms, identifiers, quoted words, a gazetteer), units and currencies, ordered
relations around "to"/"than"/"in", opposite-pair words, the kind of question, the
language, and the content words for the substitution rule.

Texts longer than WINDOW_CHARS * 2 are analysed on their first and last WINDOW_CHARS
characters (the cost grows with length, and the caller runs this off the event loop);
numbers are still read from the whole text by one regex pass.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from app.semantic.guard.language import ENGLISH as ENGLISH_CODE
from app.semantic.guard.language import language_of
from app.semantic.guard.lexicon import ENGLISH as L
from app.semantic.guard.lexicon import LANGUAGES

__all__ = ["SUFFIX_PLUS", "WINDOW_CHARS", "Analysis", "analyse", "name_found", "stems", "within_one_edit"]

WINDOW_CHARS = 1500
SUFFIX_PLUS = "x+"  # "j7+", "18+": a name or a bound, not an operation


@dataclass(frozen=True, slots=True)
class Analysis:
    """What a paraphrase must preserve, extracted from one text."""

    # ISO 639-1 code ("en", "de", ...), a script code, or "und"; English rules need "en".
    language: str
    # Negation cues of the text's own language when it is not English.
    foreign_negations: frozenset[str]
    # Bounds on numbers, by direction: "ge" (at least, or more), "le", "gt", "lt".
    bounds: frozenset[str]
    # Arithmetic operators between operands ("2x + 6", "2^10") and suffix pluses ("j7+"), sorted.
    operators: tuple[str, ...]
    # The words in order, lower case without accents: wording compared where the
    # English rules cannot read the language.
    wording: tuple[str, ...]
    # Content words (not stop words, numbers or punctuation), canonical, in order.
    content: tuple[str, ...]
    # For each content word, the index of its sentence in `sentences`.
    content_sentences: tuple[int, ...]
    sentences: tuple[str, ...]
    # Numbers written unambiguously ("3", "three", "3rd", "v3.12") must appear on both sides.
    numbers: frozenset[str]
    # Numbers that paraphrases often drop or add ("one", "a first step", "half"): they
    # satisfy the other side's numbers but are never required themselves.
    soft_numbers: frozenset[str]
    # Any negation cue ("not", "n't", "never", "without", "no", "-free").
    negated: bool
    # Names: each must be found (up to a typo) among the other text's words.
    names: frozenset[str]
    # Every word of the text, canonical and lower case: where the other side's names are looked up.
    vocab: frozenset[str]
    # Units/currencies tied to a quantity (or unambiguous): must be present on the other side.
    units: frozenset[str]
    # Every unit mentioned, tied to a quantity or not.
    units_any: frozenset[str]
    # Opposite-pair groups used, as (group, side) pairs.
    opposites: frozenset[tuple[str, str]]
    # Ordered relations (class, left, right): "usd to eur" -> ("dir", "usd", "eur").
    relations: frozenset[tuple[str, str, str]]
    # The question word the text opens with (what, where, how, ...), or "".
    lead: str
    # Question kind: who/when/where/why, and "how old/tall/far/big/heavy/long".
    wh: frozenset[str]
    # The words in order, lower case: an acronym on the other side may be spelled out here.
    words: tuple[str, ...]

    @property
    def english(self) -> bool:
        return self.language == ENGLISH_CODE


_META_NEGATION = re.compile(
    r"\b(?:i|i'm|im|i am)\s+(?:really\s+|just\s+|still\s+)?(?:do\s+not|don't|dont|can't|cant|cannot|can\s+not|am\s+not|'m\s+not)\s+"
    r"(?:know|understand|get|remember|figure\s+out|seem\s+to|find|sure)\b"
    r"|\bnot\s+sure\b|\bno\s+idea\b|\bno\s+worries\b|\bno\s+problem\b|\bno\s+thanks\b|\bwhether\s+or\s+not\b|\bor\s+not\b"
    r"|\bif\s+you\s+don'?t\s+mind\b|\bdon'?t\s+hesitate\b|\bnot\s+too\s+much\s+trouble\b"
    r"|\bhope\s+(?:this|that|it)\s+(?:isn't|is\s+not|isnt|doesn't|does\s+not|doesnt)\b",
    re.I,
)

_HOW_RE = re.compile(r"\bhow\s+(old|tall|high|far|big|large|heavy|long)\b", re.I)
_WHEN_RE = re.compile(r"\b(?:what|which)\s+(?:year|date|time|day|month|century|decade)\b", re.I)
_HOW_COME_RE = re.compile(r"\bhow\s+come\b|\b(?:what|which)\s+(?:causes?|caused|makes?|made)\b|\breasons?\b", re.I)
# A bound on a number: "7 or more", "at least 7", "over 18" (grouped by direction).
_NUMBER_AHEAD = r"(?=[$€£]?\d|(?:one|two|three|four|five|six|seven|eight|nine|ten|twenty|fifty|a\s+hundred)\b)"
_BOUND_RE = re.compile(
    r"\b(at\s+least|no\s+less\s+than|minimum\s+of|at\s+most|up\s+to|no\s+more\s+than|maximum\s+of|more\s+than"
    r"|greater\s+than|over|above|less\s+than|fewer\s+than|under|below)\s+"
    + _NUMBER_AHEAD
    + r"|(?<=\d)\s*(or\s+(?:more|higher|above|less|fewer|lower|below))\b",
    re.I,
)
_BOUND_SIDES = {
    "or more": "ge",
    "or higher": "ge",
    "or above": "ge",
    "at least": "ge",
    "no less than": "ge",
    "minimum": "ge",
    "minimum of": "ge",
    "or less": "le",
    "or fewer": "le",
    "or lower": "le",
    "or below": "le",
    "at most": "le",
    "up to": "le",
    "no more than": "le",
    "maximum": "le",
    "maximum of": "le",
    "more than": "gt",
    "greater than": "gt",
    "over": "gt",
    "above": "gt",
    "less than": "lt",
    "fewer than": "lt",
    "under": "lt",
    "below": "lt",
}

_TOKEN_RE = re.compile(
    r"[^\W\d_](?:\w|'(?=\w))*(?:\.[^\W_]\w*)*(?:\+\+|#)?"  # words, identifiers (os.path.join), c++, c#
    r"|\d+(?:[.,:]\d+)*"  # numbers
    r"|->|=>|→|\n|[.!?;:,()\[\]{}\"]",
)
_NUM_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|\d+(?:\.\d+)*")
_FRACTION_RE = re.compile(r"(?<![\d/.])(\d{1,2})\s*/\s*(\d{1,2})(?![\d/])")
_UNIT_SUFFIX_RE = re.compile(
    r"(\d)(km|kg|mg|g|ml|l|lbs?|oz|cm|mm|m|ft|mi|gb|mb|kb|tb|mbps|gbps|kwh|kw|h|hrs?|mins?|s|secs?|k|pm|am|st|nd|rd|th)\b",
    re.I,
)
_LEADS = frozenset("what what's whats which who whom whose where when why how".split())
_NAME_NUMBER_RE = re.compile(r"\b([A-Za-z]{3,})(\d+)\b")
_QUOTED_RE = re.compile(r"\"([^\"]{1,80})\"|(?<!\w)'([^']{1,80})'(?!\w)|`([^`]{1,80})`")


# --------------------------------------------------------------------------- helpers


def stems(word: str) -> tuple[str, ...]:
    """Crude English suffix stripping: enough to find "sorted"/"sorting" under "sort".

    Returns candidates, most literal first; a lexicon lookup takes the first hit.
    """
    out = [word]
    n = len(word)
    if n > 4 and word.endswith("ies"):
        out.append(word[:-3] + "y")
    if n > 3 and word.endswith("es"):
        out.append(word[:-2])
    if n > 3 and word.endswith("s") and not word.endswith("ss"):
        out.append(word[:-1])
    if n > 4 and word.endswith("ed"):
        out += [word[:-2], word[:-1]]
        if n > 5 and word[-3] == word[-4]:
            out.append(word[:-3])  # stopped -> stop
    if n > 5 and word.endswith("ing"):
        out += [word[:-3], word[:-3] + "e"]
        if n > 6 and word[-4] == word[-5]:
            out.append(word[:-4])  # running -> run
    if n > 5 and word.endswith("ly"):
        out.append(word[:-2])
    return tuple(out)


def _noun(word: str) -> str:
    """Singular form for matching names and relation terms ("cups" == "cup", "France's" == "france")."""
    if word.endswith("'s") or word.endswith("’s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _norm_number(s: str) -> str:
    s = s.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", s) else s
    if s.isdigit():
        return str(int(s))
    return s


def within_one_edit(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance <= 1 (one typo: insert, delete, substitute, transpose)."""
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la > lb:
        a, b, la, lb = b, a, lb, la
    i = 0
    while i < la and a[i] == b[i]:
        i += 1
    if la == lb:
        if a[i + 1 :] == b[i + 1 :]:
            return True  # substitution (or equal)
        return i + 1 < la and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2 :] == b[i + 2 :]
    return a[i:] == b[i + 1 :]  # b has one extra character


def _spelled_out(acronym: str, words: tuple[str, ...]) -> bool:
    """True if consecutive words (fillers such as "of" optional) have these initials."""
    for seq in (words, tuple(w for w in words if w not in L.acronym_fillers)):
        for i in range(len(seq) - len(acronym) + 1):
            if all(seq[i + k][0] == acronym[k] for k in range(len(acronym))):
                return True
    return False


def name_found(name: str, other: Analysis) -> bool:
    vocab = other.vocab
    if name in vocab:
        return True
    if 2 <= len(name) <= 5 and name.isalpha() and _spelled_out(name, other.words):
        return True  # GDP == gross domestic product
    if len(name) < 5:  # "Iran"/"Iraq", "Java"/"Lava": short names must match exactly
        return False
    return any(len(v) >= 4 and v[0] == name[0] and within_one_edit(name, v) for v in vocab)


# --------------------------------------------------------------------------- extraction


@lru_cache(maxsize=8192)
def analyse(text: str) -> Analysis:
    """Extract the paraphrase-invariant features of one text (cached: texts repeat)."""
    window = _window(text)  # everything below reads this, but the middle's numbers
    t = unicodedata.normalize("NFKC", window)
    t = t.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"').replace("—", ", ").replace("–", "-")

    # Quoted words are the subject of the question ("translate 'cat'"), so they are names.
    quoted_words: set[str] = set()
    for m in _QUOTED_RE.finditer(t):
        for w in re.findall(r"[^\W_]+", (m.group(1) or m.group(2) or m.group(3)).lower()):
            if w not in L.stop_words and not w.isdigit():
                quoted_words.add(_noun(w))

    # The kind of question: "who/when/where/why" words are collected with the tokens
    # below; here the phrases: "what year" asks when, "how come" asks why, "how tall" ...
    wh: set[str] = set()
    if _WHEN_RE.search(t):
        wh.add("when")
    if _HOW_COME_RE.search(t):
        wh.add("why")
    wh.update(L.how_kinds[m.group(1).lower()] for m in _HOW_RE.finditer(t))

    t = _META_NEGATION.sub(" ", t)
    low_t = t.lower()
    for alias in L.aliases:
        if alias.triggers is None or any(x in low_t for x in alias.triggers):
            t = alias.regex.sub(alias.replacement, t)
            low_t = t.lower()
    t = _UNIT_SUFFIX_RE.sub(r"\1 \2", t)  # "5km" -> "5 km", "3rd" -> "3 rd", "10k" -> "10 k"
    t = _NAME_NUMBER_RE.sub(r"\1 \2", t)  # "HERO12" -> "HERO 12", "python3" -> "python 3"

    # ---- numbers written with digits
    numbers: set[str] = set()
    soft: set[str] = set()
    for m in _FRACTION_RE.finditer(t):
        a, b = int(m.group(1)), int(m.group(2))
        if 0 < a < b <= 16:
            numbers.add(f"{a / b:g}")
    t_nofrac = _FRACTION_RE.sub(lambda m: " " if 0 < int(m.group(1)) < int(m.group(2)) <= 16 else m.group(0), t)
    for m in _NUM_RE.finditer(t_nofrac):
        v = _norm_number(m.group(0))
        tail = t_nofrac[m.end() : m.end() + 3].lower()
        if re.match(r" k\b", tail) and v.isdigit():
            v = str(int(v) * 1000)  # "10k"
        numbers.add(v)
    if len(text) > 2 * WINDOW_CHARS:  # the middle is not analysed, but its numbers count
        numbers.update(_norm_number(m.group(0)) for m in _NUM_RE.finditer(text[WINDOW_CHARS:-WINDOW_CHARS]))

    # ---- tokens
    raw_tokens = _TOKEN_RE.findall(t)
    words = [w for w in raw_tokens if w[0].isalpha()]
    # In ALL-CAPS or Title Case text capitals carry no information.
    long_words = [w for w in words if len(w) > 3]
    shouting = sum(1 for w in long_words if w.isupper()) > 0.6 * len(long_words) >= 2
    later = [w for w in words[1:] if len(w) > 1]
    title_case = len(later) >= 3 and all(w[0].isupper() for w in later)
    trust_case = not (shouting or title_case)

    names: set[str] = set(quoted_words)
    vocab: set[str] = set()
    units: set[str] = set()
    units_any: set[str] = set()
    opposites: set[tuple[str, str]] = set()
    negated = False
    toks: list[str] = []  # canonical lower-case token stream for relations
    content: list[str] = []
    content_sentences: list[int] = []
    sentence = 0
    at_start = True
    prev = ""
    num_run: list[str] = []

    def flush_number_words() -> None:
        # "twenty five" -> 25, "three hundred" -> 300, "a dozen" -> 12
        if not num_run:
            return
        total, current = 0, 0
        for w in num_run:
            if w in L.small_numbers:
                current += L.small_numbers[w]
            elif w in L.tens:
                current += L.tens[w]
            elif w == "dozen":
                current = max(current, 1) * 12
            elif w == "hundred":
                current = max(current, 1) * 100
            else:
                total += max(current, 1) * L.scales[w]
                current = 0
        value = total + current
        (soft if value == 1 else numbers).add(str(value))
        num_run.clear()

    for tok in raw_tokens:
        low = tok.lower()
        if not tok[0].isalnum():  # punctuation
            flush_number_words()
            if tok in ".!?;:\n":
                at_start = True
                if tok in ".!?\n" and prev not in (".", "!", "?", "\n"):
                    sentence += 1
            toks.append(tok)
            prev = tok
            continue
        if tok[0].isdigit():
            flush_number_words()
            toks.append("#" + _norm_number(tok))
            prev = "#"
            at_start = False
            continue

        # number words
        if low in L.small_numbers or low in L.tens or low in L.scales or low == "dozen":
            if low in L.scales and prev == "#" and toks and toks[-1][1:].isdigit():
                # a scale word after digits: "5 million" == "5,000,000"
                base = toks[-1][1:]
                numbers.discard(base)
                numbers.add(str(int(base) * L.scales[low]))
                toks[-1] = "#" + str(int(base) * L.scales[low])
                continue
            num_run.append(low)
            vocab.add(low)
            toks.append("#w")
            prev = "#"
            at_start = False
            continue
        flush_number_words()

        if low in {"st", "nd", "rd", "th", "k"} and prev == "#":
            continue  # ordinal / thousands suffix split off a number
        if low in L.ordinals:
            numbers.add(str(L.ordinals[low]))
        elif low in L.soft_numbers and not (low == "second" and prev == "#"):  # "5 second" is time
            soft.add(L.soft_numbers[low])
        if tok in L.roman:
            numbers.add(str(L.roman[tok]))
            vocab.add(low)
            toks.append(low)
            prev = low
            at_start = False
            continue

        # negation
        if low in L.negations or low.endswith("n't"):
            negated = True

        word = low if tok.isupper() else _noun(low)  # "HTTPS" is not the plural of "HTTP"
        vocab.add(low)
        vocab.add(word)

        # units
        unit = L.units.get(low)
        if unit is not None:
            quantified = prev == "#" or prev in L.quantity_words
            if low in L.units_needing_quantity:
                if quantified:
                    units.add(unit)
                    units_any.add(unit)
                elif low not in L.unit_abbreviations:
                    units_any.add(unit)  # "how many minutes": a unit, but not a quantity
            else:
                units.add(unit)
                units_any.add(unit)

        # names
        is_name = False
        if low in L.gazetteer or word in L.gazetteer:
            is_name = True
        elif low not in L.not_names and word not in L.stop_words:
            if any(c.isdigit() for c in tok) or "_" in tok or "." in tok or tok.endswith(("++", "#")):
                is_name = True  # identifiers, versions-in-names: ipv4, os.path.join, snake_case
            elif trust_case and tok[0].isupper():
                if len(tok) > 1 and tok.isupper():
                    is_name = True  # acronyms: API, USD, NATO — wherever they stand
                elif not at_start and tok not in ("I",):
                    is_name = True  # capitalised mid-sentence: a proper noun
            elif trust_case and any(c.isupper() for c in tok[1:]):
                is_name = True  # iPhone, eBay
        if is_name and word not in L.not_names and unit is None:  # "MB" is a unit, not a name
            names.add(word)

        # opposites
        for cand in stems(low):
            hit = L.opposites.get(cand)
            if hit:
                opposites.update(hit)
                break

        if low in L.wh_words:
            wh.add(L.wh_words[low])

        # relation terms use canonical units, so "kilometers to miles" == "km to mi"
        toks.append(unit if unit is not None and unit in units_any else word)
        if low not in L.stop_words and word not in L.stop_words and low not in L.degree_words and len(low) > 1:
            content.append(toks[-1])
            content_sentences.append(sentence)
        prev = low
        at_start = False
    flush_number_words()

    # "the first", "a second" -> soft numbers were added above; a number written with
    # digits and as a soft word on the same side is still strong.
    soft -= numbers
    if "1" in numbers:  # "1 cup" == "a cup", "1 lb" == "a pound": 1 is rarely written out
        numbers.discard("1")
        soft.add("1")

    relations = _relations(toks)

    lowered = [w.lower() for w in words]
    language = language_of(window, lowered)
    return Analysis(
        language=language,
        foreign_negations=_foreign_negations(window, language),
        wording=_wording(window),
        lead=next((w for w in lowered[:3] if w in _LEADS), ""),
        bounds=frozenset(
            _BOUND_SIDES[" ".join((m.group(1) or m.group(2)).lower().split())] for m in _BOUND_RE.finditer(window)
        ),
        operators=tuple(sorted(m.group(1) or SUFFIX_PLUS for m in _OPERATOR_RE.finditer(window))),
        content=tuple(content),
        content_sentences=tuple(content_sentences),
        sentences=tuple(_SENTENCE_RE.split(window.strip())),
        numbers=frozenset(numbers),
        soft_numbers=frozenset(soft),
        negated=negated,
        names=frozenset(names),
        vocab=frozenset(vocab),
        units=frozenset(units),
        units_any=frozenset(units_any),
        opposites=frozenset(opposites),
        relations=frozenset(relations),
        wh=frozenset(wh),
        words=tuple(w.lower() for w in words),
    )


def _relations(toks: list[str]) -> set[tuple[str, str, str]]:
    """Ordered (class, left, right) term pairs around direction/comparison markers.

    Up to two content terms are taken on each side of a marker, within its clause.
    "from X ... to Y" and "to Y ... from X" both give X->Y; a lone "from" gives nothing,
    because "move files from A" vs "move files to A" would otherwise need the object's
    role, which a pattern cannot tell.
    """
    out: set[tuple[str, str, str]] = set()
    n = len(toks)
    for i, tok in enumerate(toks):
        cls = L.relation_markers.get(tok)
        if cls is None or tok == "from":
            continue
        # comparisons put more words between the compared terms ("gold is more expensive than")
        width = 4 if cls == "cmp" else 2
        right = _collect(toks, i + 1, n, width, cls)
        left = _collect(toks, i - 1, -1, width, cls)
        if cls == "dir":
            src = _from_terms(toks, i)
            if src is not None:
                left = src
        for a in left:
            for b in right:
                if a != b:
                    out.add((cls, a, b))
    return out


def _from_terms(toks: list[str], i: int) -> list[str] | None:
    """Terms after a "from" in the same clause as the "to" at index i, if there is one."""
    for step, stop in ((-1, -1), (1, len(toks))):
        j = i + step
        while j != stop and toks[j] not in L.clause_boundaries:
            if toks[j] == "from":
                return _collect(toks, j + 1, len(toks), 2, "dir")
            j += step
    return None


def _collect(toks: list[str], start: int, stop: int, width: int, cls: str) -> list[str]:
    """Up to `width` content terms from `start` towards `stop`, stopping at the clause's edge
    or at another marker. An infinitive "to" is skipped right after a marker ("than to
    drive") and anywhere in a comparison ("easier to learn than")."""
    step = 1 if stop > start else -1
    found: list[str] = []
    scanned = 0
    j = start
    while j != stop and len(found) < width and scanned < 2 * width + 1:
        tok = toks[j]
        if tok in L.clause_boundaries:
            break
        if tok in L.relation_markers:
            if tok != "to" or (cls != "cmp" and (found or step < 0)):
                break
        elif tok != "#w" and tok not in L.stop_words and tok not in L.degree_words:
            found.append(tok)
        scanned += 1
        j += step
    return found


def _window(text: str) -> str:
    if len(text) <= 2 * WINDOW_CHARS:
        return text
    return text[:WINDOW_CHARS] + "\n" + text[-WINDOW_CHARS:]


# Where the token loop counts a new sentence: after . ! ? or a line break.
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|\n+")

# An operator between a number or a one-letter variable and another; or a trailing "+".
_OPERATOR_RE = re.compile(r"(?<=[\da-z)])\s*([-+*/^=<>×÷≤≥])\s*(?=\d|[a-z]\b|\()|(?<=\w)(\+)(?=\s|$|[?.,!;:)])")


def _wording(window: str) -> tuple[str, ...]:
    folded = unicodedata.normalize("NFKD", window.lower())
    return tuple(_FOREIGN_WORD_RE.findall("".join(c for c in folded if not unicodedata.combining(c))))


_FOREIGN_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]*)?")


def _foreign_negations(window: str, language: str) -> frozenset[str]:
    cues = LANGUAGES.negations.get(language)
    if not cues:
        return frozenset()
    lower = window.lower()
    found = {w for w in _FOREIGN_WORD_RE.findall(lower) if w in cues}
    if language in ("ja", "zh", "ar"):  # no spaces between words: look for the cue itself
        found |= {cue for cue in cues if cue in window}
    if language == "fr" and re.search(r"\bn'", lower):
        found.add("ne")
    return frozenset(found)
