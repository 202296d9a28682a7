"""When an optimizer's output must not be used: the original prompt is kept, with the reason
(the ``fallback_reason`` column), so no prompt is ever lost or silently replaced by junk.

:func:`degenerate_reason` returns one of these stable strings (reports count fallbacks by them;
never rename one without migrating readers), checked in this order:

- ``empty_input``: the prompt itself was blank; the optimizer was not asked (set by callers).
- ``empty_output``: the optimizer produced nothing but whitespace.
- ``truncated``: it hit ``max_new_tokens`` without EOS; a cut rewrite loses information.
- ``template_echo``: it copied parts of its own input template (``[Original prompt]``, the
  released model's instruction, chat role markers) instead of a rewrite.
- ``repetition``: a loop: a character unit repeated many times, the same word n-grams,
  lines or sentences over and over, or one word filling the text.
- ``gibberish``: not words: glued camel-case tokens (``twolineSuggest``), digits glued to words,
  BPE fragments, vowel-less or over-long letter runs, broken characters, punctuation salad, no
  content word, or almost no / almost only function words.
- ``wrong_script``: the text is not in the prompt's writing system (e.g. English for a Chinese
  prompt), by Unicode script of the letters.
- ``wrong_language``: same script but another language (English for a Spanish prompt, Japanese
  for a Chinese one), by :func:`bpo.language.mismatch` (75 languages); only when both texts are
  identified (neither is "und") and the output does not quote most of the prompt.
- ``lost_entities``: the rewrite dropped a number, a short quoted string, a code span or a
  capitalised multi-word name (``Harry Potter``) of the original, or most words of a longer
  quoted passage (the text the prompt asks to work on).
- ``answer``: it answers the prompt instead of rewriting it: opens like an answer ("Sure, here
  are...", "To fix a tire, follow..."), or, for an English request, is a statement with no
  request in it (no question, imperative or "can you").
- ``repeats_history`` (multi-turn only, ``history`` given): the rewrite copies the conversation
  instead of rewriting the last message: a run of :data:`bpo.history_echo.SPAN` words from an earlier
  turn that the last message does not contain (restating the conversation, or answering with
  the assistant's earlier words), or it writes role labels (``User:``/``Assistant:``) of the
  rendered conversation.

The checks that compare with the prompt (script, language, entities, answer) run only when
``original`` is given. Thresholds were calibrated on real outputs (SmolLM2-135M-Instruct before
and after a short fine-tune, and a tiny from-scratch model's gibberish) against the BPO
release's reference rewrites; ``tests/data/fallback_calibration.jsonl`` holds the labelled set
and ``tests/test_fallback.py`` reports precision/recall per reason. No neural model: about 0.6 ms
of CPU per output on the calibration set (each prompt identified once), most of it language identification
(``benchmarks/bench_fallback.py``).
"""

from __future__ import annotations

import re
from collections import Counter

from bpo.language import UNDETERMINED
from bpo.language import detect as detect_language
from bpo.language import mismatch as language_mismatch
from bpo.optimizer.script_words import _FUNCTION_ALL, _script_shares

EMPTY_INPUT = "empty_input"
EMPTY = "empty_output"
TRUNCATED = "truncated"
TEMPLATE_ECHO = "template_echo"
REPETITION = "repetition"
WRONG_SCRIPT = "wrong_script"
WRONG_LANGUAGE = "wrong_language"
GIBBERISH = "gibberish"
LOST_ENTITIES = "lost_entities"
ANSWER = "answer"
REPEATS_HISTORY = "repeats_history"

# Every reason, in check order (EMPTY_INPUT is the callers'); reports and docs list these.
# fmt: off
REASONS = (EMPTY_INPUT, EMPTY, TRUNCATED, TEMPLATE_ECHO, REPETITION, GIBBERISH, WRONG_SCRIPT, WRONG_LANGUAGE,
           LOST_ENTITIES, ANSWER, REPEATS_HISTORY)
# fmt: on

# ---------------------------------------------------------------------------------- repetition
# A 1-8 char unit repeated 8+ times in a row (longer units are word n-grams, checked on words;
# a longer unit with no spaces is one over-long token, which the gibberish check catches).
_RUN = re.compile(r"(.{1,8}?)\1{7,}", re.S)
_LONG_CHAR_RUN = 40  # "=====" rules and "-----" separators are text; 40 of one character are not
_WORD = re.compile(r"\w+(?:['’]\w+)*", re.U)


def _repetition(text: str, words: list[str]) -> bool:
    for m in _RUN.finditer(text):
        if len(set(m.group(1))) > 1 or len(m.group(0)) >= _LONG_CHAR_RUN:
            return True
    lower = [w.lower() for w in words]
    if len(lower) >= 12:
        trigrams = [tuple(lower[i : i + 3]) for i in range(len(lower) - 2)]
        if len(set(trigrams)) / len(trigrams) < 0.5:
            return True
        # a loop: one 4-gram 4+ times (models loop until the token limit)
        if Counter(zip(lower, lower[1:], lower[2:], lower[3:])).most_common(1)[0][1] >= 4:
            return True
    if len(lower) >= 8:  # one content word filling the text ("Suggest water Suggest more Suggest")
        content = Counter(w for w in lower if w not in _FUNCTION_ALL and not w.isdigit())
        if content and (n := content.most_common(1)[0][1]) >= 4 and n / len(lower) > 0.3:
            return True
    units = [u.strip().lower() for u in re.split(r"[\n.!?]+", text) if len(u.strip()) >= 12]
    if units and max(Counter(units).values()) >= 3:
        return True
    return False


# ------------------------------------------------------------------------------ template echo
def _echo_markers() -> tuple[str, ...]:
    """Lower-case pieces of the optimizer's inputs that a rewrite never contains, taken from
    :mod:`bpo.prompt_format` so they follow its wording."""
    from bpo.prompt_format import BPO_RELEASE_TEMPLATE, TEMPLATE, TEMPLATE_MT, build_prompt

    plain = [line for line in (TEMPLATE + TEMPLATE_MT).splitlines() if line.startswith("[") and line.endswith("]")]
    header = build_prompt("x").split(".", 1)[0][:40]  # the plain instruction's opening words
    release = BPO_RELEASE_TEMPLATE.replace("[INST]", "").split("{prompt}")[0].split(":")[0].split(". ")
    chat = ["<|im_start|>", "<|im_end|>", "<|user|>", "<|assistant|>", "[inst]", "[/inst]"]
    return tuple(m.strip().lower() for m in plain + [header] + release + chat if m.strip())


_ECHO_MARKERS = _echo_markers()


# ---------------------------------------------------------------------------- script, language


def _wrong_script(text: str, original: str) -> bool:
    orig, n_orig = _script_shares(_strip_code(original))
    if n_orig < 4:
        return False
    main, n_main = orig.most_common(1)[0]
    if n_main / n_orig < 0.6:
        return False  # a mixed-script prompt: any answer script is plausible
    out, n_out = _script_shares(_strip_code(text))
    if n_out < 4:
        return False
    # Han prompts use 1 char a word, Latin ones ~5: compare shares, generously
    return out[main] / n_out < 0.3


# -------------------------------------------------------------------------------- gibberish
_CAMEL_GLUE = re.compile(r"[a-z]{2,}[A-Z][a-z]")  # twolineSuggest, SuggestatsSuggest
_DIGIT_GLUE = re.compile(r"(?:\d[A-Za-z]{3,}|[A-Za-z]{3,}\d)")  # 1Suggest (but not 3D, 2nd, mp3)
_BAD_START = re.compile(r"\s*[,.;:?!)\]}](?![\w(])")  # a text never starts with closing punctuation
_PUNCT_SALAD = re.compile(r"[,;:]\s*[,.;:?!]|\?\s*[.,]|(?<!\.)\.\.(?!\.)|(?<![a-zA-Z])\.\s*[,?]")
_BROKEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]|\xa0{3,}")
# Short words of en/es/fr/de/it/pt/nl (1-2 letters), so their fragments stand out in the others
_SHORT_WORDS = frozenset(
    "a i o e y u à á é è ó ò ù ú í ì "
    "am an as at be by do go he hi if in is it me my no of oh ok on or so to up us we "
    "al de el en es la le lo me mi ni se si su te tu un ya yo "
    "au ce du et il je ma ne on sa ta ça "
    "da di er im ob um zu "
    "ci ha ho ma ne ti vi "
    "ao do em eu na nu os às "
    "ik je ze zo om op".split()
)
_VOWELS = set("aeiouyAEIOUYàáâäèéêëìíîïòóôöùúûüÿ")


def _odd_word(token: str, allowed: set[str]) -> bool:
    if token.lower() in allowed:
        return False
    if _CAMEL_GLUE.search(token) and not token[:1].isupper():
        return True
    if _CAMEL_GLUE.search(token) and sum(c.isupper() for c in token) >= 2 and len(token) > 12:
        return True
    if _DIGIT_GLUE.fullmatch(token) or re.search(r"[a-z]\d[a-z]", token):
        return True
    letters = [c for c in token if c.isalpha()]
    if len(letters) >= 5 and token.isascii() and token.islower() and not any(c in _VOWELS for c in letters):
        return True
    return len(token) > 24 and token.isalpha()


_ODD_CANDIDATE = re.compile(
    r"[a-z]{2}[A-Z][a-z]|\d[A-Za-z]{3}|[A-Za-z]{3}\d|[a-z]\d[a-z]|\b[b-df-hj-np-tv-xz]{5,}\b|\w{25}"
)


def _odd_candidates(text: str) -> list[str]:
    """The whitespace-separated tokens around the pre-filter's hits, once each."""
    tokens, last_end = [], -1
    for m in _ODD_CANDIDATE.finditer(text):
        if m.start() < last_end:
            continue
        start = max(text.rfind(" ", 0, m.start()), text.rfind("\n", 0, m.start())) + 1
        end = min((i for i in (text.find(" ", m.end()), text.find("\n", m.end())) if i >= 0), default=len(text))
        tokens.append(text[start:end])
        last_end = end
    return tokens


def _gibberish(text: str, words: list[str], original: str | None) -> bool:
    if not words:
        return True
    plain = _strip_code(text)
    n_tokens = max(len(plain.split()), 1)
    # the prompt's own tokens (a table, "7 cm", a name like iPhone) are never held against it
    allowed = {w.lower() for w in _WORD.findall(original)} if original else set()
    candidates = _odd_candidates(plain)  # a cheap pre-filter; _odd_word decides
    odd = sum(_odd_word(t.strip(".,;:!?\"'()[]{}*"), allowed) for t in candidates)
    if odd >= 2 and odd / n_tokens >= 0.1:
        return True
    if odd >= 1 and n_tokens <= 4:
        return True
    broken = _BROKEN.search(text)  # control characters or U+FFFD: bytes decoded mid-character
    if broken and not (original and broken.group(0) in original):
        return True
    # BPE fragments: one- and two-letter lower-case tokens that are no word of these languages
    short = [
        w for w in words if len(w) <= 2 and w.isalpha() and w.islower() and w not in _SHORT_WORDS and w not in allowed
    ]
    if len(short) >= 2 and len(short) / len(words) >= 0.06:
        return True
    # together: glued tokens, fragments and over-long lower-case "words" (real ones of 15+
    # letters are rare) in one text
    long = [w for w in words if len(w) >= 15 and w.isalpha() and w.islower() and w not in allowed]
    weird = odd + len(short) + len(long)
    if weird >= 3 and weird / n_tokens >= 0.07:
        return True
    # a rewrite says what it asks about: at least one content word
    if not any(w.isalpha() and w.lower() not in _FUNCTION_ALL and (len(w) >= 3 or not w.isascii()) for w in words):
        return True
    if _BAD_START.match(text) or len(_PUNCT_SALAD.findall(text)) >= 2:
        return True
    # Latin-script prose has function words, ~30-55% of its words; word salad from a barely
    # trained model has almost none (content-word salad) or almost only them (glue-word salad)
    latin = [w for w in words if w.isascii() and w.isalpha()]
    if len(latin) >= 6 and len(latin) >= 0.8 * len(words):
        share = sum(w.lower() in _FUNCTION_ALL for w in latin) / len(latin)
        if (share < 0.08 and len(latin) >= 8) or share > 0.7:
            return True
    return False


# -------------------------------------------------------------------------------- entities
_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
_PASSAGE = "\0passage:"  # marks a long quoted string among the entities (checked by its words)
_QUOTED = re.compile(r"\"([^\"\n]{1,80})\"|“([^”\n]{1,80})”|«([^»\n]{1,80})»")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\w])")
_NAME = re.compile(r"\b[A-Z][\w'’-]*(?:[ \t]+(?:(?:of|of the|de|van|von)[ \t]+)?[A-Z][\w'’-]*)+")
# Capitalised words that start sentences or titles, not names
# fmt: off
_NOT_NAME = {"what", "how", "why", "who", "when", "where", "which", "can", "could", "would", "should", "please", "tell",
             "write", "explain", "describe", "give", "list", "create", "make", "i", "you", "the", "a", "an", "is",
             "are", "do", "does", "in", "on", "for", "to", "and", "my", "if", "it", "this", "that", "hi", "hello",
             "hey",
             "generate", "provide", "find", "identify", "classify", "answer", "rewrite", "summarize", "translate",
             "input", "output", "question", "text", "context", "instruction", "title", "note", "example", "let",
             "as", "use", "based", "from", "with", "your", "yes", "no", "q", "suggest", "compose", "i'm", "i've", "i'd",
             "i'll", "let's", "it's", "here", "there", "now", "then", "also", "but", "so", "we", "they", "he", "she"}
# fmt: on


def _strip_code(text: str) -> str:
    return _CODE.sub(" ", text)


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().lower()


def _entities(original: str) -> set[str]:
    found = {m.group(0) for m in _CODE.finditer(original)}
    for m in _QUOTED.finditer(original):
        q = next(g for g in m.groups() if g is not None)
        if q.strip() and len(q.split()) <= 5:  # a quoted name or phrase, not a quoted instruction
            found.add(q)
        elif q.strip():  # a quoted passage (text to work on): kept when most of its words are
            found.add(_PASSAGE + q)
    plain = _strip_code(original)
    found.update(n.replace(",", "") for n in _NUMBER.findall(plain))
    for m in _NAME.finditer(plain):
        parts = m.group(0).split()
        while parts and parts[0].lower().strip(".,:") in _NOT_NAME:
            parts = parts[1:]
        while parts and parts[-1].lower().strip(".,:") in _NOT_NAME:
            parts = parts[:-1]
        if len(parts) >= 2:
            found.add(" ".join(parts).rstrip(".,:;"))
    return {e for e in found if e.strip()}


def _kept(entity: str, out: str, out_words: set[str]) -> bool:
    if entity.startswith(_PASSAGE):
        words = _WORD.findall(_norm(entity[len(_PASSAGE) :]))
        return sum(w in out_words for w in words) * 2 >= len(words)
    e = _norm(entity).replace(",", "")
    if e in out:
        return True
    parts = e.split()
    if len(parts) < 2 or not parts[0][:1].isalpha():
        return False
    # a name may be inflected or shortened (Power App -> Power Apps, Linux PC -> Linux):
    # kept when at least half of its words start a word of the rewrite
    hits = sum(any(w.startswith(p) for w in out_words) for p in parts)
    return hits * 2 >= len(parts)


def _lost_entities(text: str, original: str) -> bool:
    ents = _entities(original)
    if not ents:
        return False
    out = _norm(text).replace(",", "")
    out_words = set(_WORD.findall(out))
    return any(not _kept(e, out, out_words) for e in ents)


# ---------------------------------------------------------------------------------- answer
_ANSWER_OPENERS = re.compile(
    r"^\W*(?:sure|certainly|of course|absolutely|great question|here(?:'s| is| are)|i'd be happy|i would be happy|"
    r"i'm happy|happy to help|as an ai|the answer|yes[,!.]|no[,!.]|okay[,!.]|ok[,!.]|thank you|thanks for|a:|"
    r"i'm sorry|i am sorry|i'll |dear |the original prompt is|to (?:\w+ ){1,8}?\w+, (?:you|it's|we|follow|start))",
    re.I,
)
_REQUEST = re.compile(
    r"\?|\b(?:please|explain|describe|write|tell|give|list|provide|create|generate|compose|suggest|summari[sz]e|"
    r"translate|help|can you|could you|would you|i want|i need|i'd like|include|make sure|discuss|compare|analy[sz]e|"
    r"outline|identify|classify|rewrite|find|share|recommend|plan|list|show|calculate|convert|complete|answer|"
    r"your task|you are|imagine|pretend|act as|let's|should i|must|focus)\b",
    re.I,
)


def _answer(text: str, words: list[str], original: str) -> bool:
    orig_start = original.strip()[:40]
    if _ANSWER_OPENERS.match(text) and not _ANSWER_OPENERS.match(orig_start):
        return True
    # a rewrite of a request is still a request (a question, an imperative, "you ..."); a
    # statement in reply to one is an answer
    if (
        len(words) >= 4
        and not _REQUEST.search(text)
        and _REQUEST.search(original)
        and detect_language(original) in (UNDETERMINED, "en")
        and detect_language(text) in (UNDETERMINED, "en")
    ):
        return True
    return False


def _repeats_history(text: str, original: str, history: list) -> bool:
    from bpo.history_echo import copies_history, writes_role_labels

    return writes_role_labels(text, original) or copies_history(text, original, history)


def degenerate_reason(text: str, hit_limit: bool, original: str | None = None, history=None) -> str | None:
    """Why optimizer output ``text`` should not be used, or None when it is fine.

    ``hit_limit``: generation stopped at ``max_new_tokens``. ``original``: the prompt it rewrites
    (the last user message); without it only the checks on the output alone run (empty,
    truncated, echo, repetition, gibberish). ``history``: the earlier turns (``{role, content}``
    dicts) of a multi-turn rewrite; every check still judges against ``original``, and the
    rewrite must not copy the history (``repeats_history``)."""
    stripped = text.strip()
    if not stripped:
        return EMPTY
    if hit_limit:
        return TRUNCATED
    lower = stripped.lower()
    orig_lower = (original or "").lower()
    if any(m in lower and m not in orig_lower for m in _ECHO_MARKERS):
        return TEMPLATE_ECHO
    words = _WORD.findall(stripped)
    # a table or list repeated from the prompt is the prompt's, not a loop
    if _repetition(stripped, words) and not (original and _repetition(original, _WORD.findall(original))):
        return REPETITION
    if _gibberish(stripped, words, original):
        return GIBBERISH
    if original is not None and original.strip():
        if _wrong_script(stripped, original):
            return WRONG_SCRIPT
        if language_mismatch(_strip_code(original), _strip_code(stripped)):
            return WRONG_LANGUAGE
        if _lost_entities(stripped, original):
            return LOST_ENTITIES
        if _answer(stripped, words, original):
            return ANSWER
        if history and _repeats_history(stripped, original, history):
            return REPEATS_HISTORY
    return None
