"""Which language a text is written in, as an ISO 639-1 code, or ``"und"`` (undetermined).

One place for it: sources without a language label, the critique filter, the optimizer's
fallback detector and the report all ask :func:`detect`. The identification itself is
lingua-language-detector (75 languages, n-gram models shipped in its wheel, no download at run
time), in its low-accuracy mode: 0.3 s to load and about 90 MB of memory against 8-10 s and
0.9 GB for the high-accuracy mode, for 98% against 99% on sentences and 81% against 84% on
word pairs (``benchmarks/bench_langid.py``; README "Languages").

A guess that is not clear is never returned: short texts, texts whose two best languages are
close (a mixed-language text, a three-word English phrase that could be Maori) and texts with no
single main script give ``"und"``, so a caller that drops on a language mismatch never drops on
a guess.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

UNDETERMINED = "und"

# Fewer letters than this (after code spans are removed): no decision. Han/kana/Hangul carry a
# word in one to three characters, so they count double.
MIN_LETTERS = 12
# The best language's confidence (lingua's values sum to 1 over its languages) and its lead over
# the second: below either, "und". Chosen on tests/data/langid_set.jsonl: lower values add
# wrong guesses on word pairs, higher ones leave more sentences undetermined.
MIN_CONFIDENCE = 0.7
MIN_LEAD = 0.4
# Texts under SHORT_LETTERS letters need more: low-accuracy mode calls short English Danish,
# Esperanto or Tswana at 0.8-0.9 ("Hi, can you help me write my memoir?").
SHORT_LETTERS = 100
MIN_CONFIDENCE_SHORT = 0.95
# ... or, when the caller compares with a text already identified (short_bar=False), this:
# "The benefits of yoga are numerous." passes (0.85 English), "Explain vaccines." (0.72 French) not.
MIN_CONFIDENCE_SHORT_COMPARED = 0.8
# A text whose main script holds less than this share of its letters is mixed: "und".
MIN_SCRIPT_SHARE = 0.8

# code spans and URLs are not the text's language
_CODE = re.compile(r"```.*?```|`[^`\n]*`|https?://\S+", re.S)
_WIDE_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "HANGUL")

_lock = threading.Lock()
_detector = None


def _get_detector():
    global _detector
    with _lock:
        if _detector is None:
            from lingua import LanguageDetectorBuilder

            _detector = LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()
    return _detector


def _script(ch: str) -> str:
    if ch.isascii():
        return "LATIN"
    try:
        first = unicodedata.name(ch).split(" ", 1)[0]
    except ValueError:
        return "UNKNOWN"
    # Japanese mixes kana and Han: one writing system for this purpose
    return "CJK" if first in ("HIRAGANA", "KATAKANA", "HALFWIDTH", "FULLWIDTH") else first


def _letters(text: str) -> int:
    """Letters of the main script, weighted (0 when the text has no main script)."""
    scripts = Counter(_script(ch) for ch in text if ch.isalpha())
    n = sum(scripts.values())
    if not n:
        return 0
    main, n_main = scripts.most_common(1)[0]
    if n_main / n < MIN_SCRIPT_SHARE:
        return 0
    return n_main * (2 if main in _WIDE_SCRIPTS else 1)


@lru_cache(maxsize=8192)  # one prompt is compared with many outputs, by several checks
def detect(text: str, *, short_bar: bool = True) -> str:
    """ISO 639-1 code of ``text``'s language, or :data:`UNDETERMINED` when it is too short,
    mixed or not clear. ``short_bar=False`` lowers the bar for short texts: for a caller
    comparing with a language already identified (an English reply to a clear Spanish prompt)."""
    text = _CODE.sub(" ", text or "")
    letters = _letters(text)
    if letters < MIN_LETTERS:
        return UNDETERMINED
    values = _get_detector().compute_language_confidence_values(text)
    if not values:
        return UNDETERMINED
    best = values[0]
    second = values[1].value if len(values) > 1 else 0.0
    if letters < SHORT_LETTERS:
        need = MIN_CONFIDENCE_SHORT if short_bar else MIN_CONFIDENCE_SHORT_COMPARED
    else:
        need = MIN_CONFIDENCE
    if best.value < need or best.value - second < MIN_LEAD:
        return UNDETERMINED
    return best.language.iso_code_639_1.name.lower()


_WORD = re.compile(r"\w+(?:['’]\w+)*", re.U)


def mismatch(original: str, text: str) -> bool:
    """``text`` is in another language than ``original``: both identified and different. An
    undetermined side never counts, nor does a ``text`` that keeps most (60%) of the original's
    words of 3+ letters (the original quoted inside a wrapper in another language). The text
    needs no extra bar for being short: the original's language is already known."""
    lang = detect(_CODE.sub(" ", original))
    if lang == UNDETERMINED:
        return False
    out = detect(_CODE.sub(" ", text), short_bar=False)
    if out in (UNDETERMINED, lang):
        return False
    orig_words = {w.lower() for w in _WORD.findall(original) if len(w) >= 3}
    out_words = {w.lower() for w in _WORD.findall(text)}
    return not orig_words or len(orig_words & out_words) / len(orig_words) < 0.6


def detect_many(texts: Iterable[str]) -> list[str]:
    """:func:`detect` for each text, in order."""
    return [detect(t) for t in texts]


def _names() -> dict[str, str]:
    from lingua import Language

    out = {}
    for lang in Language.all():
        code = lang.iso_code_639_1.name.lower()
        out[lang.name.lower()] = code
        out[code] = code
        out[lang.iso_code_639_3.name.lower()] = code
    # names datasets use that are not lingua's
    out.update(
        {
            "norwegian": "nb",
            "no": "nb",
            "farsi": "fa",
            "chinese (simplified)": "zh",
            "chinese (traditional)": "zh",
            "filipino": "tl",
            "iw": "he",
            "in": "id",
            "ji": "yi",
        }
    )
    return out


_NAME_CACHE: dict[str, str] | None = None


def normalize(label: str | None) -> str:
    """A dataset's own language label ("en", "pt-BR", "zh_Hant", "English", "eng") as an ISO 639-1
    code; :data:`UNDETERMINED` for an empty or unknown label ("unknown", "und", "xx")."""
    global _NAME_CACHE
    if _NAME_CACHE is None:
        _NAME_CACHE = _names()
    key = (label or "").strip().lower()
    if key in _NAME_CACHE:
        return _NAME_CACHE[key]
    base = re.split(r"[-_ ]", key, maxsplit=1)[0]
    return _NAME_CACHE.get(base, UNDETERMINED)


def known_codes() -> frozenset[str]:
    """Every ISO 639-1 code :func:`detect` can return (besides ``"und"``)."""
    from lingua import Language

    return frozenset(lang.iso_code_639_1.name.lower() for lang in Language.all())


ALL = "all"  # sources.<name>.languages: every language


class LanguageConfigError(ValueError):
    pass


def wanted_languages(languages, where: str) -> frozenset[str] | None:
    """The config value as ISO 639-1 codes; None keeps every language (``all`` or an empty
    list). A name no code matches is an error naming ``where``."""
    if languages is None or languages == ALL or (not isinstance(languages, str) and len(languages) == 0):
        return None
    if isinstance(languages, str):
        raise LanguageConfigError(f"config {where}: expected a list of languages or 'all', got {languages!r}")
    codes = set()
    for lang in languages:
        if str(lang).lower() == ALL:
            return None
        code = normalize(str(lang))
        if code == UNDETERMINED:
            raise LanguageConfigError(
                f"config {where}: unknown language {lang!r} (use ISO 639-1 codes such as en, zh, or 'all')"
            )
        codes.add(code)
    return frozenset(codes)
