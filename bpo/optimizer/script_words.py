"""Script and function-word data of the fallback detector: which writing system a text uses, and
which words are function words (gibberish, repetition checks; language is bpo.language's job)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

_LATIN = re.compile(r"[A-Za-z\u00C0-\u024F]")
_OTHER_LETTER = re.compile(r"[^\W\d_A-Za-z\u00C0-\u024F]")


def _script(ch: str) -> str:
    """The writing system of a non-Latin letter, coarse: kana and Han count as one (Japanese
    mixes them)."""
    try:
        first = unicodedata.name(ch).split(" ", 1)[0]
    except ValueError:
        return "unknown"
    if first in ("CJK", "HIRAGANA", "KATAKANA", "HALFWIDTH", "FULLWIDTH"):
        return "han"
    return first.lower()


def _script_shares(text: str) -> tuple[Counter, int]:
    counts = Counter(map(_script, _OTHER_LETTER.findall(text)))  # Latin counted by regex: fast
    counts["latin"] = len(_LATIN.findall(text))
    return counts, sum(counts.values())


# Function words of en/es/fr/de/it/pt/nl, lower case.
# fmt: off
_FUNCTION = {
    "en": {"the", "and", "of", "to", "is", "are", "you", "your", "that", "this", "with", "for", "what", "how", "can",
           "me", "my", "it", "be", "about", "please", "an", "which", "would", "should", "from", "have", "do", "does",
           "i", "or", "on", "at", "some", "will", "their", "they", "was", "were", "give", "make", "write", "tell"},
    "es": {"el", "los", "las", "del", "y", "es", "que", "por", "para", "una", "cómo", "qué", "cuáles", "son", "con",
           "mi", "su", "lo", "al", "pero", "más", "puedes", "muy", "también", "sobre", "hacer", "explica",
           "explícame", "dame", "todos", "días"},
    "fr": {"le", "les", "des", "et", "est", "que", "pour", "une", "dans", "avec", "comment", "quelles", "quels",
           "quelle", "sont", "mon", "ma", "mes", "je", "vous", "tu", "pas", "sur", "du", "au", "aux", "donne-moi",
           "qui", "cette", "faire", "moi", "façons"},
    "de": {"der", "die", "das", "und", "ist", "ich", "nicht", "mit", "für", "ein", "eine", "einen", "wie", "was",
           "kann", "meine", "mein", "dass", "auf", "den", "dem", "zu", "sind", "wenn", "schreibe", "bitte", "auch",
           "oder", "über", "erkläre", "morgen"},
    "it": {"il", "gli", "della", "di", "che", "è", "per", "una", "sono", "come", "non", "con", "nel", "alla", "mio",
           "questo", "anche", "più", "cosa", "quali", "puoi", "spiegami", "dimmi"},
    "pt": {"o", "os", "as", "do", "da", "dos", "das", "em", "é", "que", "para", "uma", "não", "com", "como", "posso",
           "meu", "minha", "você", "mais", "sobre", "são", "quais", "explique", "no", "na"},
    "nl": {"de", "het", "een", "en", "is", "van", "dat", "niet", "voor", "met", "hoe", "wat", "ik", "mijn", "je",
           "zijn", "kun", "kunt", "ook", "op", "leg", "uit"},
}
# fmt: on
# Function words shared between those languages: no use for telling them apart, but counted
# with the rest as function words (gibberish, repetition checks)
# fmt: off
_SHARED_FUNCTION = {"a", "in", "as", "by", "not", "all", "if", "so", "but", "we", "he", "she", "his", "her", "them",
                    "its", "has", "had", "been", "than", "there", "into", "more", "any", "who", "when", "where", "why",
                    "e", "la", "un", "en", "de", "per", "se", "no", "si", "non"}
# fmt: on
_FUNCTION_ALL = frozenset().union(*_FUNCTION.values(), _SHARED_FUNCTION)
