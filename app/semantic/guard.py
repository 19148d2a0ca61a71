"""Paraphrase guard: cheap, explainable vetoes on top of embedding similarity.

A sentence embedding scores "convert Celsius to Fahrenheit" and "convert Fahrenheit to
Celsius" at 0.99: it sees the same words in the same topic. A semantic cache that serves
on cosine alone therefore returns wrong answers exactly where questions look most alike.
This module extracts, once per text, the features that a paraphrase never changes, and
vetoes a cosine match when they differ:

* numbers (digits, number words, ordinals, versions, years) — "Python 3.8" vs "3.12";
* negation — "is X safe" vs "is X not safe", "with" vs "without";
* names — capitalised terms, acronyms, identifiers, quoted words and a small list of
  countries, cities, languages and products, so "capital of france" (lower case) vs
  "of Germany" is caught too;
* units and currencies — "5 km" vs "5 miles", "USD" vs "EUR";
* direction of a relation — "X to Y" vs "Y to X", "A faster than B" vs "B faster than A";
* opposite operations or qualities — ascending/descending, add/remove, encrypt/decrypt,
  max/min, pros/cons ... ;
* the kind of question — "who invented X" vs "when was X invented".

Everything here is precision-oriented but written to keep recall: each rule only fires on
an explicit conflict (one side says A, the other says not-A), never on a feature that one
side merely leaves out, except where a paraphrase would not leave it out (a number, a
name, a negation). Typos in names are tolerated (edit distance), number words match
digits ("three" == "3"), and sentence-initial capitals are not taken for names.

API::

    sig = signature(text)                      # extract once (cached), store with the entry
    compatible_signatures(sig_q, sig_c) -> bool
    mismatch(query, cached) -> str | None      # the first failing rule, for logs/debugging
    compatible(query, cached) -> bool

Pure Python (re, unicodedata): about 50-100 µs per signature on a slow shared core, 1-2 µs
per comparison of two signatures; `signature` keeps an LRU cache of 8192 texts.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "Signature",
    "compatible",
    "compatible_signatures",
    "mismatch",
    "mismatch_signatures",
    "signature",
]


# --------------------------------------------------------------------------- signature


@dataclass(frozen=True, slots=True)
class Signature:
    """What a paraphrase must preserve, extracted from one text."""

    # Numbers written unambiguously ("3", "three", "3rd", "v3.12") must appear on both sides.
    numbers: frozenset[str]
    # Numbers that paraphrases often drop or add ("one", "a first step", "half"): they
    # satisfy the other side's numbers but are never required themselves.
    soft_numbers: frozenset[str]
    # Any negation cue ("not", "n't", "never", "without", "no", "-free", "unsafe").
    negated: bool
    # Names: each must be found (up to a typo) among the other text's words.
    names: frozenset[str]
    # Every word of the text, canonical and lower case: where the other side's names are looked up.
    vocab: frozenset[str]
    # Units/currencies tied to a quantity (or unambiguous): must be present on the other side.
    units: frozenset[str]
    # Every unit mentioned, tied to a quantity or not.
    units_any: frozenset[str]
    # Opposite-pair groups used, as (group, side) pairs; a group used on both sides must use the same sides.
    opposites: frozenset[tuple[str, str]]
    # Ordered relations (class, left, right): "usd to eur" -> ("dir", "usd", "eur").
    relations: frozenset[tuple[str, str, str]]
    # Question kind: who/when/where/why, and "how old/tall/far/big/heavy/long".
    wh: frozenset[str]
    # The words in order, lower case: an acronym on the other side may be spelled out here
    # ("GDP" == "gross domestic product").
    words: tuple[str, ...]


# --------------------------------------------------------------------------- lexicons
# Kept small and explicit: each entry is a word a paraphrase keeps but a different
# question changes. Adding a word only ever makes the guard stricter for texts using it.

_STOP = frozenset(
    """
    a an the this that these those some any each every all both either of at on for with by about as
    is are was were be been being am do does did doing done have has had having will would shall should
    can could may might must i me my mine we us our you your yours he him his she her it its they them
    their what which who whom whose how when where why there here then than so very just also too really
    please thanks thank hi hello hey dear kindly pls plz want need like way get got make made
    use using used tell give show explain know one ones
    if and or but not no nor into onto to from in out up down over under again
    """.split()
)

# Capitalised or all-caps tokens that are not names.
_NOT_NAMES = frozenset(
    "i i'm i'd i'll i've ok okay lol pls plz fyi asap btw imo imho thx tl dr am pm eg ie etc vs e.g i.e".split()
)

# Lower-case words that are names wherever they appear (ambiguous ones such as go, rust,
# swift, apple, windows, turkey, china, may, march are left out: they count as names only
# when capitalised mid-sentence).
_GAZETTEER = frozenset(
    """
    afghanistan albania algeria andorra angola argentina armenia australia austria azerbaijan bahamas
    bahrain bangladesh barbados belarus belgium belize benin bhutan bolivia bosnia botswana brazil brunei
    bulgaria burundi cambodia cameroon canada colombia congo croatia cuba cyprus czechia denmark
    djibouti ecuador egypt eritrea estonia ethiopia fiji finland france gabon gambia germany ghana
    greece grenada guatemala guyana haiti honduras hungary iceland india indonesia iran iraq ireland
    israel italy jamaica japan kazakhstan kenya korea kosovo kuwait kyrgyzstan laos latvia lebanon
    lesotho liberia libya liechtenstein lithuania luxembourg madagascar malawi malaysia maldives mali
    malta mauritania mauritius mexico moldova monaco mongolia montenegro morocco mozambique myanmar
    namibia nepal netherlands holland nicaragua nigeria norway oman pakistan palestine panama paraguay
    peru philippines poland portugal qatar romania russia rwanda samoa senegal serbia seychelles singapore
    slovakia slovenia somalia spain sudan suriname sweden switzerland syria taiwan tajikistan tanzania
    thailand togo tonga tunisia turkmenistan uganda ukraine uruguay uzbekistan vanuatu venezuela vietnam
    yemen zambia zimbabwe unitedstates unitedkingdom england scotland wales africa asia europe antarctica
    oceania tokyo osaka kyoto paris london berlin madrid rome milan barcelona lisbon amsterdam brussels
    vienna prague budapest warsaw moscow dublin edinburgh oslo stockholm copenhagen helsinki reykjavik
    athens istanbul cairo dubai mumbai delhi bangalore beijing shanghai seoul bangkok sydney melbourne
    auckland toronto vancouver montreal chicago boston seattle denver miami houston dallas atlanta
    newyork losangeles sanfrancisco lima bogota naples venice florence munich zurich geneva hamburg
    frankfurt lyon marseille porto seville valencia krakow bali phuket hanoi manila jakarta nairobi lagos
    johannesburg english french german spanish italian portuguese dutch russian polish ukrainian greek
    turkish arabic hebrew hindi urdu bengali chinese mandarin cantonese japanese korean vietnamese thai
    indonesian malay swahili swedish norwegian danish finnish icelandic czech hungarian romanian latin
    persian farsi tagalog american british canadian australian mexican brazilian indian irish scottish
    european african asian python javascript typescript java kotlin scala ruby php perl haskell elixir
    erlang clojure lua matlab fortran cobol pascal cpp csharp fsharp zig ocaml mysql postgresql sqlite
    mongodb redis bash zsh powershell html css sass json yaml xml toml csv markdown latex excel react
    vue angular svelte django flask fastapi rails laravel nodejs deno numpy pandas tensorflow pytorch
    docker kubernetes terraform ansible nginx github gitlab linux ubuntu debian fedora centos macos
    ios android iphone ipad aws azure gcp heroku vercel netlify wordpress shopify stripe paypal gmail
    outlook slack instagram facebook twitter tiktok youtube netflix spotify google microsoft tesla
    samsung icloud vscode vim emacs chrome firefox jupyter ww1 ww2 bitcoin ethereum
    monday tuesday wednesday thursday friday saturday sunday january february april june july august
    september october november december
    """.split()
)

# Spelling variants -> one canonical word, applied to the text before anything else.
# (pattern, replacement, case_sensitive)
_ALIASES: list[tuple[str, str, bool]] = [
    (r"\bworld\s+war\s+(?:ii|2|two)\b|\bww\s?(?:ii|2)\b|\bsecond\s+world\s+war\b", " ww2 ", False),
    (r"\bworld\s+war\s+(?:i|1|one)\b|\bww\s?(?:i|1)\b|\bfirst\s+world\s+war\b|\bgreat\s+war\b", " ww1 ", False),
    (r"\bus\s+dollars?\b|\busd\b|\$", " usd ", False),
    (r"\bcanadian\s+dollars?\b|\bcad\b", " cad ", False),
    (r"\baustralian\s+dollars?\b|\baud\b", " aud ", False),
    (r"\bpounds?\s+sterling\b|\bbritish\s+pounds?\b|\bgbp\b|£", " gbp ", False),
    (r"\beuros?\b|\beur\b|€", " eur ", False),
    (r"\bjapanese\s+yen\b|\byen\b|\bjpy\b|¥", " jpy ", False),
    (r"\byuan\b|\brmb\b|\bcny\b", " cny ", False),
    (r"\brupees?\b|\binr\b|₹", " inr ", False),
    (
        r"\bunited\s+states(?:\s+of\s+america)?\b|\bu\.s\.a?\.?(?=\W|$)|(?<!south )(?<!north )(?<!latin )(?<!central )\bamerica\b",
        " unitedstates ",
        False,
    ),
    (r"\bUSA?\b", " unitedstates ", True),
    (r"\bunited\s+kingdom\b|\bgreat\s+britain\b|\bbritain\b|\bu\.k\.(?=\W|$)", " unitedkingdom ", False),
    (r"\buk\b", " unitedkingdom ", False),
    (r"\bnew\s+york(?:\s+city)?\b|\bnyc\b", " newyork ", False),
    (r"\blos\s+angeles\b", " losangeles ", False),
    (r"\bLA\b", " losangeles ", True),
    (r"\bsan\s+francisco\b", " sanfrancisco ", False),
    (r"\bSF\b", " sanfrancisco ", True),
    (r"\bnode(?:\.?js)?\b", " nodejs ", False),
    (r"(?<![\w.])js\b", " javascript ", False),
    (r"\bTS\b", " typescript ", True),
    (r"\bgolang\b", " go ", False),
    (r"\bc\+\+(?!\w)|\bcpp\b", " cpp ", False),
    (r"\bc#(?!\w)|\bc\s+sharp\b", " csharp ", False),
    (r"\bf#(?!\w)", " fsharp ", False),
    (r"\bk8s\b", " kubernetes ", False),
    (r"\bpostgres(?:ql)?\b", " postgresql ", False),
    (r"\bmongo(?:db)?\b", " mongodb ", False),
    (r"\bvs\s?code\b|\bvisual\s+studio\s+code\b", " vscode ", False),
    (r"\bmac\s?os(?:\s?x)?\b|\bos\s?x\b", " macos ", False),
    (r"\be-mail\b", " email ", False),
    (r"\b(?:planet\s+)?earth\b|\bthe\s+planet\b", " world ", False),  # "on Earth" == "in the world"
    (r"\bsecond[\s-]hand\b|\bpre-?owned\b", " used ", False),
    (r"\bhow\s+2\b", " how to ", False),
    (r"\bshow\s+(?:me|us)\b", " tell me ", False),  # a request, not the opposite of "hide"
    (r"\ba\s*(?:to|-)\s*z\b", " ascending ", False),
    (r"\bz\s*(?:to|-)\s*a\b", " descending ", False),
    (r"\b(?:per|a|each|every)\s+(day|week|month|year|hour)\b", r" \1ly ", False),  # "per day" == "daily"
    (r"\bannually\b|\bannual\b", " yearly ", False),
    (
        r"\b(zoom|check|opt|scroll|scale|speed|turn|move|fade|clock|swipe|sign|cash|dial|tone|phase|roll)(?:s|ed|ing)?\s+(in|out|up|down)\b",
        r" \1\2 ",
        False,
    ),
    (
        r"\bthis\s+(?=(?:week|weekend|month|year|morning|afternoon|evening|season|summer|winter|spring|autumn)\b)",
        " thisperiod ",
        False,
    ),  # text-speak, not the number two
    (r"\bcv\b|\bcurriculum\s+vitae\b|\br[ée]sum[ée]\b", " resume ", False),
    (r"\bapplication\s+programming\s+interfaces?\b", " api ", False),
    (r"\bartificial\s+intelligence\b", " ai ", False),
    (r"\bwi-?fi\b", " wifi ", False),
    # units written as phrases
    (r"\bmiles?\s+(?:per|an|a)\s+hour\b|\bmph\b", " mph ", False),
    (r"\bkilomet(?:er|re)s?\s+(?:per|an|a)\s+hour\b|\bkm\s*/\s*h\b|\bkph\b|\bkmh\b", " kmh ", False),
    (r"\bfl(?:uid)?\.?\s+(?:oz|ounces?)\b", " floz ", False),
    (r"\bper\s?cent(?:age)?\b|%", " pct ", False),
    (r"°\s*c\b|\bdegrees?\s+c\b", " celsius ", False),
    (r"°\s*f\b|\bdegrees?\s+f\b", " fahrenheit ", False),
    (r"\b([cf])\s*(to|into|in|->|→|2)\s*([cf])\b", r" \1unit \2 \3unit ", False),
    # phrasal verbs whose particle carries the meaning
    (r"\b(?:turn|switch|power)(?:s|ed|ing)?\s+(?:(?:it|them|this|that)\s+)?on\b", " enable ", False),
    (r"\b(?:turn|switch|power)(?:s|ed|ing)?\s+(?:(?:it|them|this|that)\s+)?off\b", " disable ", False),
    (r"\b(?:log|sign)(?:s|ged|ging|ed|ing)?[\s-]?(?:in|on)(?:to)?\b|\blogin\b|\bsignin\b", " login ", False),
    (r"\b(?:log|sign)(?:s|ged|ging|ed|ing)?[\s-]?out\b|\blogout\b|\bsignout\b", " logout ", False),
    (
        r"\bround(?:s|ed|ing)?\s+(?:(?:a|an|the|it|this|that|my|number|numbers|value|values)\s+){0,2}up\b",
        " roundup ",
        False,
    ),
    (
        r"\bround(?:s|ed|ing)?\s+(?:(?:a|an|the|it|this|that|my|number|numbers|value|values)\s+){0,2}down\b",
        " rounddown ",
        False,
    ),
    (r"\bheat(?:s|ed|ing)?\s+up\b", " heat ", False),
    (r"\bcool(?:s|ed|ing)?\s+down\b", " cool ", False),
    (r"\b(\w+)-free\b", r" without \1 ", False),  # sugar-free == without sugar
]


def _split_top(pattern: str) -> list[str]:
    """Split a regex on its top-level "|"."""
    parts, depth, cur, i = [], 0, [], 0
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


def _triggers(pattern: str) -> list[str] | None:
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
            inner = _triggers(alt[3 if alt.startswith("(?:") else 1 : j])
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


_ALIAS_RES = [(re.compile(p, 0 if cs else re.I), r, _triggers(p)) for p, r, cs in _ALIASES]

# Units: surface form -> canonical. Canonical "pound" is ambiguous (mass or money).
_UNITS: dict[str, str] = {}
for _canon, _forms in {
    "km": "km kilometer kilometre kilometers kilometres",
    "mile": "mile miles mi",
    "m": "m meter metre meters metres",
    "cm": "cm centimeter centimetre centimeters centimetres",
    "mm": "mm millimeter millimetre millimeters millimetres",
    "inch": "inch inches",
    "ft": "ft foot feet",
    "yard": "yard yards yd",
    "kg": "kg kilo kilos kilogram kilogramme kilograms",
    "g": "g gram gramme grams",
    "mg": "mg milligram milligrams",
    "lb": "lb lbs",
    "pound": "pound pounds",
    "oz": "oz ounce ounces",
    "ton": "ton tons tonne tonnes",
    "carat": "carat carats",
    "l": "l liter litre liters litres",
    "ml": "ml milliliter millilitre milliliters millilitres",
    "gallon": "gallon gallons gal",
    "cup": "cup cups",
    "tbsp": "tbsp tablespoon tablespoons",
    "tsp": "tsp teaspoon teaspoons",
    "pint": "pint pints",
    "quart": "quart quarts",
    "floz": "floz",
    "celsius": "celsius centigrade cunit",
    "fahrenheit": "fahrenheit funit",
    "kelvin": "kelvin",
    "mph": "mph",
    "kmh": "kmh",
    "pct": "pct",
    "kb": "kb kilobyte kilobytes",
    "mb": "mb megabyte megabytes",
    "gb": "gb gigabyte gigabytes",
    "tb": "tb terabyte terabytes",
    "mbps": "mbps",
    "gbps": "gbps",
    "kw": "kw kilowatt kilowatts",
    "kwh": "kwh",
    "usd": "usd dollar dollars buck bucks",
    "eur": "eur",
    "gbp": "gbp",
    "jpy": "jpy",
    "cny": "cny",
    "inr": "inr",
    "cad": "cad",
    "aud": "aud",
    "s": "s sec secs second seconds",
    "min": "min mins minute minutes",
    "h": "h hr hrs hour hours",
    "day": "day days",
    "week": "week weeks",
    "month": "month months",
    "year": "year years yr yrs",
    "decade": "decade decades",
    "century": "century centuries",
}.items():
    for _f in _forms.split():
        _UNITS[_f] = _canon
# Which canonical units satisfy which (the ambiguous "pound" matches mass or money).
_UNIT_ALTS = {
    "pound": frozenset({"pound", "lb", "gbp"}),
    "lb": frozenset({"lb", "pound"}),
    "gbp": frozenset({"gbp", "pound"}),
}
# Surface forms that are units only right after a quantity ("5 m", "2 cups", "3 weeks"):
# elsewhere they are ordinary words ("world cup", "a second opinion", "every day").
_UNIT_NEEDS_QUANTITY = frozenset(
    "m g l s h mi gal yd cup cups foot feet sec secs second seconds min mins minute minutes hr hrs hour hours "
    "day days week weeks month months year years yr yrs decade decades century centuries".split()
)
# Abbreviations that are not even a unit mention without a quantity ("min", "s", "m").
_UNIT_ABBREVIATIONS = frozenset("m g l s h mi gal yd sec secs min mins hr hrs yr yrs".split())
_QUANTITY_WORDS = frozenset({"a", "an", "per", "one", "half"})

# Number words.
_SMALL = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_ORDINALS = {
    w: i + 3
    for i, w in enumerate(
        "third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth "
        "fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split()
    )
}
_SOFT_WORDS = {"first": "1", "second": "2", "half": "0.5", "quarter": "0.25", "once": "1", "twice": "2"}
_ROMAN = {
    "II": 2,
    "III": 3,
    "IV": 4,
    "VI": 6,
    "VII": 7,
    "VIII": 8,
    "IX": 9,
    "XI": 11,
    "XII": 12,
    "XIII": 13,
    "XIV": 14,
    "XV": 15,
    "XVI": 16,
}

# Negation cues. "n't" is handled by suffix; typo forms without the apostrophe are listed.
_NEGATIONS = frozenset(
    """
    not no never none nobody nothing nowhere neither nor without cannot cant dont doesnt didnt isnt arent
    wasnt werent wont wouldnt shouldnt couldnt havent hasnt hadnt aint unsafe illegal unhealthy
    impossible incorrect invalid unable unlikely unnecessary insecure inaccurate
    """.split()
)
# Negations that are about the asker, not the question ("I don't know how to ...").
_META_NEGATION = re.compile(
    r"\b(?:i|i'm|im|i am)\s+(?:really\s+|just\s+|still\s+)?(?:do\s+not|don't|dont|can't|cant|cannot|can\s+not|am\s+not|'m\s+not)\s+"
    r"(?:know|understand|get|remember|figure\s+out|seem\s+to|find|sure)\b"
    r"|\bnot\s+sure\b|\bno\s+idea\b|\bno\s+worries\b|\bno\s+problem\b|\bno\s+thanks\b|\bwhether\s+or\s+not\b|\bor\s+not\b"
    r"|\bif\s+you\s+don'?t\s+mind\b|\bdon'?t\s+hesitate\b|\bnot\s+too\s+much\s+trouble\b"
    r"|\bhope\s+(?:this|that|it)\s+(?:isn't|is\s+not|isnt|doesn't|does\s+not|doesnt)\b",
    re.I,
)

# Opposite pairs (and a few n-way groups): group -> sides -> words. Words are matched
# after crude suffix stripping, so "sorting", "sorted" and "sorts" all find "sort".
_OPPOSITE_GROUPS: dict[str, dict[str, str]] = {
    "order": {"asc": "ascending asc increasing", "desc": "descending desc decreasing"},
    "addremove": {"add": "add insert append", "remove": "remove delete drop erase"},
    "crypt": {"en": "encrypt", "de": "decrypt"},
    "code": {"en": "encode", "de": "decode"},
    "compress": {"c": "compress zip pack archive", "d": "decompress unzip unpack unarchive extract"},
    "serial": {"s": "serialize serialise", "d": "deserialize deserialise"},
    "install": {"i": "install", "u": "uninstall"},
    "mount": {"m": "mount", "u": "unmount"},
    "enable": {"on": "enable activate", "off": "disable deactivate"},
    "lock": {"l": "lock", "u": "unlock"},
    "block": {"b": "block", "u": "unblock"},
    "hide": {"h": "hide", "u": "unhide show reveal"},
    "undo": {"un": "undo", "re": "redo"},
    "pause": {"p": "pause", "r": "resume unpause"},
    "attach": {"a": "attach", "d": "detach"},
    "freq": {"h": "hourly", "d": "daily", "w": "weekly", "m": "monthly", "y": "yearly"},
    "follow": {"f": "follow", "u": "unfollow"},
    "subscribe": {"s": "subscribe", "u": "unsubscribe"},
    "connect": {"c": "connect", "d": "disconnect"},
    "freeze": {"f": "freeze frozen froze", "t": "thaw defrost unfreeze"},
    "mute": {"m": "mute", "u": "unmute"},
    "pin": {"p": "pin", "u": "unpin"},
    "updown": {"up": "increase raise boost enlarge", "down": "decrease lower reduce"},
    "shrink": {"s": "shrink", "t": "stretch"},
    "expand": {"e": "expand", "c": "collapse"},
    "load": {"up": "upload", "down": "download"},
    "port": {"im": "import", "ex": "export"},
    "git": {"push": "push", "pull": "pull fetch"},
    "stack": {"push": "push", "pop": "pop"},
    "queue": {"en": "enqueue", "de": "dequeue"},
    "trade": {"buy": "buy purchase bought", "sell": "sell sold"},
    "bank": {"in": "deposit", "out": "withdraw withdrawal"},
    "lend": {"borrow": "borrow", "lend": "lend lent loan"},
    "send": {"send": "send sent", "receive": "receive"},
    "answer": {"yes": "accept", "no": "decline reject refuse"},
    "grant": {"g": "grant", "r": "revoke"},
    "permit": {"allow": "allow permit", "deny": "deny forbid prohibit ban"},
    "include": {"in": "include", "ex": "exclude except"},
    "startstop": {"start": "start begin launch", "stop": "stop halt terminate kill quit"},
    "openclose": {"open": "open", "close": "close closed shut"},
    "merge": {"merge": "merge join combine", "split": "split"},
    "login": {"in": "login", "out": "logout"},
    "round": {"up": "roundup ceil ceiling", "down": "rounddown floor"},
    "temp": {"hot": "heat warm reheat hot hotter hottest", "cold": "cool chill cold colder coldest"},
    "extreme": {
        "max": "max maximum maximize maximise largest biggest highest greatest tallest longest most",
        "min": "min minimum minimize minimise smallest lowest least fewest shortest",
    },
    "firstlast": {"first": "first earliest", "last": "last latest"},
    "age": {"old": "oldest older", "new": "newest youngest younger"},
    # not "good"/"bad": "are my eggs still good" asks what "have my eggs gone bad" asks
    "quality": {"good": "better best", "bad": "worse worst"},
    "speed": {"fast": "fast faster fastest quick quicker quickest", "slow": "slow slower slowest"},
    "size": {"big": "big bigger large larger", "small": "small smaller"},
    "height": {"high": "high higher", "low": "low"},
    "amount": {"more": "more", "less": "less fewer"},
    "length": {"long": "longer", "short": "short shorter"},
    "weight": {"heavy": "heavy heavier", "light": "lighter"},
    "price": {"cheap": "cheap cheaper cheapest inexpensive affordable", "dear": "expensive pricey pricier"},
    "strength": {"strong": "strong stronger strongest", "weak": "weak weaker weakest"},
    "ease": {"easy": "easy easier easiest simple simplest", "hard": "hard harder hardest difficult"},
    "case": {"upper": "uppercase upper capital", "lower": "lowercase"},
    "gainlose": {"gain": "gain win won", "lose": "lose lost loss"},
    "prosc": {"pro": "pro pros advantage benefit upside", "con": "con cons disadvantage drawback downside risk"},
    "sign": {"pos": "positive", "neg": "negative"},
    "parity": {"odd": "odd", "even": "even"},
    "axis": {"h": "horizontal horizontally", "v": "vertical vertically"},
    "side": {"left": "left", "right": "right"},
    "rowcol": {"row": "row", "col": "column"},
    "rw": {"read": "read", "write": "write written wrote"},
    "inout": {"in": "input inbound incoming", "out": "output outbound outgoing"},
    "frontback": {"front": "frontend", "back": "backend"},
    "inside": {"in": "inside indoor indoors", "out": "outside outdoor outdoors"},
    "above": {"above": "above over exceed exceeding", "below": "below under"},
    "beforeafter": {"before": "before", "after": "after"},
    "compass": {"n": "north northern", "s": "south southern", "e": "east eastern", "w": "west western"},
    "season": {"spring": "spring", "summer": "summer", "autumn": "autumn", "winter": "winter"},
    "daytime": {"morning": "morning", "afternoon": "afternoon", "evening": "evening", "night": "night tonight"},
    "reltime": {
        "past": "yesterday last previous ago",
        "now": "today currently thisperiod",
        "future": "tomorrow next upcoming",
    },
    "arith": {
        "add": "plus sum addition add",
        "sub": "minus subtract subtraction",
        "mul": "times multiply multiplied multiplication",
        "div": "divide divided division quotient",
    },
    "truth": {"t": "true", "f": "false"},
    "sex": {"m": "male men man", "f": "female women woman"},
    "arrive": {"a": "arrive arrival", "d": "depart departure"},
    "hire": {"h": "hire", "f": "fire"},
    "passfail": {"p": "pass succeed", "f": "fail"},
    "love": {"love": "love", "hate": "hate"},
    "agree": {"a": "agree", "d": "disagree"},
    "mode": {"light": "light", "dark": "dark"},
}
# Phrasal verbs joined by an alias above ("zoom in" -> "zoomin"): the particle is the side.
_PHRASAL_VERBS = "zoom check opt scroll scale speed turn move fade clock swipe sign cash dial tone phase roll".split()
_OPPOSITE_GROUPS.update({f"phr_{v}": {p: v + p for p in ("in", "out", "up", "down")} for v in _PHRASAL_VERBS})
_OPPOSITES: dict[str, list[tuple[str, str]]] = {}
for _g, _sides in _OPPOSITE_GROUPS.items():
    for _side, _words in _sides.items():
        for _w in _words.split():
            _OPPOSITES.setdefault(_w, []).append((_g, _side))

# Relation markers -> class. Pairs are compared only within a class, because "grams in a
# cup" (Y in X) and "100 F in C" (X in Y) use "in" in opposite senses, while "to" always
# points from source to target. "from" is a marker only to end a scan and to find the
# source of a "to" (see _relations).
_MARKERS: dict[str, str] = {
    "to": "dir",
    "into": "dir",
    "towards": "dir",
    "->": "dir",
    "=>": "dir",
    "→": "dir",
    "from": "dir",
    "than": "cmp",
    "over": "cmp",
    "instead": "cmp",
    "in": "in",
    "per": "in",
    "by": "by",
}
_BOUNDARY = frozenset('. , ; : ! ? ( ) [ ] { } " \n and or but if while because so'.split(" ") + ["\n"])

_ACRONYM_FILLER = frozenset("of the and for a an & de".split())
# Degree words between compared terms carry no identity ("more expensive than").
_DEGREE = frozenset("more less much far lot even still bit way slightly significantly".split())
_WH = {"who": "who", "whom": "who", "whose": "who", "when": "when", "where": "where", "why": "why"}
# "how old" and "how tall" ask different things; "how long/many/much" are left out: a
# paraphrase swaps them freely ("how long to boil" == "how many minutes to boil").
_HOW_KINDS = {
    "old": "age",
    "tall": "height",
    "high": "height",
    "far": "distance",
    "big": "size",
    "large": "size",
    "heavy": "weight",
    "long": "duration",
}
_HOW_RE = re.compile(r"\bhow\s+(old|tall|high|far|big|large|heavy|long)\b", re.I)
_WHEN_RE = re.compile(r"\b(?:what|which)\s+(?:year|date|time|day|month|century|decade)\b", re.I)
_HOW_COME_RE = re.compile(r"\bhow\s+come\b", re.I)

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
_QUOTED_RE = re.compile(r"\"([^\"]{1,80})\"|(?<!\w)'([^']{1,80})'(?!\w)|`([^`]{1,80})`")


# --------------------------------------------------------------------------- helpers


def _stems(word: str) -> tuple[str, ...]:
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


def _within_one_edit(a: str, b: str) -> bool:
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
    for seq in (words, tuple(w for w in words if w not in _ACRONYM_FILLER)):
        for i in range(len(seq) - len(acronym) + 1):
            if all(seq[i + k][0] == acronym[k] for k in range(len(acronym))):
                return True
    return False


def _name_found(name: str, other: Signature) -> bool:
    vocab = other.vocab
    if name in vocab:
        return True
    if 2 <= len(name) <= 5 and name.isalpha() and _spelled_out(name, other.words):
        return True  # GDP == gross domestic product
    if len(name) < 5:  # "Iran"/"Iraq", "Java"/"Lava": short names must match exactly
        return False
    return any(len(v) >= 4 and v[0] == name[0] and _within_one_edit(name, v) for v in vocab)


# --------------------------------------------------------------------------- extraction


@lru_cache(maxsize=8192)
def signature(text: str) -> Signature:
    """Extract the paraphrase-invariant features of one text (cached: texts repeat)."""
    t = unicodedata.normalize("NFKC", text)
    t = t.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"').replace("—", ", ").replace("–", "-")

    # Quoted words are the subject of the question ("translate 'cat'"), so they are names.
    quoted_words: set[str] = set()
    for m in _QUOTED_RE.finditer(t):
        for w in re.findall(r"[^\W_]+", (m.group(1) or m.group(2) or m.group(3)).lower()):
            if w not in _STOP and not w.isdigit():
                quoted_words.add(_noun(w))

    # The kind of question: "who/when/where/why" words are collected with the tokens
    # below; here the phrases: "what year" asks when, "how come" asks why, "how tall" ...
    wh: set[str] = set()
    if _WHEN_RE.search(t):
        wh.add("when")
    if _HOW_COME_RE.search(t):
        wh.add("why")
    wh.update(_HOW_KINDS[m.group(1).lower()] for m in _HOW_RE.finditer(t))

    t = _META_NEGATION.sub(" ", t)
    low_t = t.lower()
    for rx, repl, triggers in _ALIAS_RES:
        if triggers is None or any(x in low_t for x in triggers):
            t = rx.sub(repl, t)
            low_t = t.lower()
    t = _UNIT_SUFFIX_RE.sub(r"\1 \2", t)  # "5km" -> "5 km", "3rd" -> "3 rd", "10k" -> "10 k"

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
    at_start = True
    prev = ""
    num_run: list[str] = []

    def flush_number_words() -> None:
        # "twenty five" -> 25, "three hundred" -> 300, "a dozen" -> 12
        if not num_run:
            return
        total, current = 0, 0
        for w in num_run:
            if w in _SMALL:
                current += _SMALL[w]
            elif w in _TENS:
                current += _TENS[w]
            elif w == "dozen":
                current = max(current, 1) * 12
            elif w == "hundred":
                current = max(current, 1) * 100
            else:
                total += max(current, 1) * _SCALES[w]
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
        if low in _SMALL or low in _TENS or low in _SCALES or low == "dozen":
            if low in _SCALES and prev == "#" and toks and toks[-1][1:].isdigit():
                # a scale word after digits: "5 million" == "5,000,000"
                base = toks[-1][1:]
                numbers.discard(base)
                numbers.add(str(int(base) * _SCALES[low]))
                toks[-1] = "#" + str(int(base) * _SCALES[low])
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
        if low in _ORDINALS:
            numbers.add(str(_ORDINALS[low]))
        elif low in _SOFT_WORDS and not (low == "second" and prev == "#"):  # "5 second" is time
            soft.add(_SOFT_WORDS[low])
        if tok in _ROMAN:
            numbers.add(str(_ROMAN[tok]))
            vocab.add(low)
            toks.append(low)
            prev = low
            at_start = False
            continue

        # negation
        if low in _NEGATIONS or low.endswith("n't"):
            negated = True

        word = low if tok.isupper() else _noun(low)  # "HTTPS" is not the plural of "HTTP"
        vocab.add(low)
        vocab.add(word)

        # units
        unit = _UNITS.get(low)
        if unit is not None:
            quantified = prev == "#" or prev in _QUANTITY_WORDS
            if low in _UNIT_NEEDS_QUANTITY:
                if quantified:
                    units.add(unit)
                    units_any.add(unit)
                elif low not in _UNIT_ABBREVIATIONS:
                    units_any.add(unit)  # "how many minutes": a unit, but not a quantity
            else:
                units.add(unit)
                units_any.add(unit)

        # names
        is_name = False
        if low in _GAZETTEER or word in _GAZETTEER:
            is_name = True
        elif low not in _NOT_NAMES and word not in _STOP:
            if any(c.isdigit() for c in tok) or "_" in tok or "." in tok or tok.endswith(("++", "#")):
                is_name = True  # identifiers, versions-in-names: ipv4, os.path.join, snake_case
            elif trust_case and tok[0].isupper():
                if len(tok) > 1 and tok.isupper():
                    is_name = True  # acronyms: API, USD, NATO — wherever they stand
                elif not at_start and tok not in ("I",):
                    is_name = True  # capitalised mid-sentence: a proper noun
            elif trust_case and any(c.isupper() for c in tok[1:]):
                is_name = True  # iPhone, eBay
        if is_name and word not in _NOT_NAMES:
            names.add(word)

        # opposites
        for cand in _stems(low):
            hit = _OPPOSITES.get(cand)
            if hit:
                opposites.update(hit)
                break

        if low in _WH:
            wh.add(_WH[low])

        # relation terms use canonical units, so "kilometers to miles" == "km to mi"
        toks.append(unit if unit is not None and unit in units_any else word)
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

    return Signature(
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
        cls = _MARKERS.get(tok)
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
        while j != stop and toks[j] not in _BOUNDARY:
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
        if tok in _BOUNDARY:
            break
        if tok in _MARKERS:
            if tok != "to" or (cls != "cmp" and (found or step < 0)):
                break
        elif tok != "#w" and tok not in _STOP and tok not in _DEGREE:
            found.append(tok)
        scanned += 1
        j += step
    return found


# --------------------------------------------------------------------------- comparison


def mismatch_signatures(a: Signature, b: Signature) -> str | None:
    """The first rule that tells the two texts apart, or None when they may be paraphrases."""
    # Numbers: each unambiguous number must be on the other side (soft ones may stand in).
    if not a.numbers <= (b.numbers | b.soft_numbers) or not b.numbers <= (a.numbers | a.soft_numbers):
        return "number"
    if a.negated != b.negated:
        return "negation"
    for x, y in ((a, b), (b, a)):
        for unit in x.units:
            if not (_UNIT_ALTS.get(unit, frozenset((unit,))) & y.units_any):
                if not any(u in _UNIT_ALTS and unit in _UNIT_ALTS[u] for u in y.units_any):
                    return "unit"
    for x, y in ((a, b), (b, a)):
        for name in x.names:
            if not _name_found(name, y):
                return "name"
    if a.opposites != b.opposites:
        groups_a: dict[str, set[str]] = {}
        groups_b: dict[str, set[str]] = {}
        for g, s in a.opposites:
            groups_a.setdefault(g, set()).add(s)
        for g, s in b.opposites:
            groups_b.setdefault(g, set()).add(s)
        for g in groups_a.keys() & groups_b.keys():
            if groups_a[g] != groups_b[g]:
                return "opposite"
    if a.relations and b.relations:
        for cls, left, right in a.relations:
            if (cls, right, left) in b.relations:
                return "direction"
    if a.wh and b.wh and not (a.wh & b.wh):
        return "question"
    return None


def compatible_signatures(a: Signature, b: Signature) -> bool:
    """True when nothing a paraphrase preserves differs between the two signatures."""
    return mismatch_signatures(a, b) is None


def mismatch(query: str, cached: str) -> str | None:
    """Why `cached` cannot be a paraphrase of `query` ("number", "negation", "name", "unit",
    "opposite", "direction", "question"), or None."""
    return mismatch_signatures(signature(query), signature(cached))


def compatible(query: str, cached: str) -> bool:
    """False when the two texts differ in something a paraphrase never changes: numbers/versions/
    quantities, negation, named entities/capitalised terms, programming or natural language
    mentioned, order of a directional pair (X to Y vs Y to X), comparative direction, opposite
    operations (ascending/descending, add/remove, encrypt/decrypt, ...)."""
    return mismatch(query, cached) is None
