"""Which language a question is in, so that English rules are applied only to English.

The guard's rules read English (its lexicons are English words). For any other language
it cannot tell a paraphrase from a near-miss, so the caller must know: `language_of`
returns an ISO 639-1 code, or a script name for texts mostly in a non-Latin script.
Latin-script texts are told apart by their function words (languages.json): the language
whose function words the text uses most; English wins ties only for plain-ASCII texts.
"""

from __future__ import annotations

import unicodedata

from app.semantic.guard.lexicon import LANGUAGES

__all__ = ["ENGLISH", "language_of"]

ENGLISH = "en"

# Unicode script (first word of the character name) -> language or script code.
_SCRIPTS = {
    "CYRILLIC": "cyrillic",
    "GREEK": "el",
    "HEBREW": "he",
    "ARABIC": "ar",
    "DEVANAGARI": "hi",
    "HANGUL": "ko",
    "HIRAGANA": "ja",
    "KATAKANA": "ja",
    "CJK": "zh",
    "THAI": "th",
}


def _script(char: str) -> str | None:
    name = unicodedata.name(char, "")
    return _SCRIPTS.get(name.split(" ", 1)[0]) if name else None


def language_of(text: str, words: list[str]) -> str:
    """The language of `text`; `words` are its lower-case word tokens."""
    scripts: dict[str, int] = {}
    latin = 0
    ascii_only = True
    for char in text:
        if char.isascii():
            latin += char.isalpha()
            continue
        if not char.isalpha():
            continue
        ascii_only = False
        script = _script(char)
        if script is None:
            latin += 1
        else:
            scripts[script] = scripts.get(script, 0) + 1
    if scripts:
        script, count = max(scripts.items(), key=lambda kv: kv[1])
        if count >= latin:
            if script == "zh" and "ja" in scripts:
                return "ja"  # kanji with kana
            return "ru" if script == "cyrillic" else script
    english = sum(1 for w in words if w in LANGUAGES.english_function_words)
    best, best_count = ENGLISH, 0
    for code, marks in LANGUAGES.function_words.items():
        count = sum(1 for w in words if w in marks)
        if count > best_count:
            best, best_count = code, count
    if best_count > english or (best_count == english and best_count > 0 and not ascii_only):
        return best
    if english == 0 and not ascii_only:
        return "und"  # accented Latin text with no known function word: not English
    return ENGLISH
