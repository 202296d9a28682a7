"""Pairwise verdicts: parse what a judge wrote, and combine the two presentation orders.

Judges are asked to end with ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie). :func:`parse_verdict` is
strict by default: it takes a verdict only when the reply names it unambiguously, and returns
the rule that decided (recorded per judgment) or why nothing was decided. It never guesses
between two different verdicts, and it never reads prose unless asked to (``lenient=True``).

Strict rules, in order (``rule`` names; a ``single_bracket:`` prefix when the judge wrote
``[A]`` and no ``[[A]]`` appears at all):

- ``sole_token``: every verdict token in the reply names the same verdict (``[[B]]``,
  ``**[[Assistant B]]**``, ``[[tie]]``, ``【B】``), however often it is repeated.
- tokens naming different verdicts are ambiguous unless an explicit rule decides; where several
  decide (a final token, label lines), all must agree:

  - ``final_token``: the reply's last non-empty line is nothing but one token (the judge was
    told to end with it; the earlier tokens are quoted options or discussion);
  - ``verdict_line``: after a verdict label (``verdict``, ``decision``, ``judgment``, ``winner``,
    ``final answer`` ...), the rest of that line holds tokens of one verdict only. A line
    quoting several (the options, or ``My verdict: [[A]] ... would have chosen [[B]].``)
    decides nothing, so that example is ambiguous.
- no token at all: ``bare`` (the whole reply is ``A``, ``(B)``, ``Tie.``) or ``label`` (a label
  followed by nothing but the verdict to the end of its line: ``Final verdict: Assistant B``,
  ``The winner is Assistant A.``, ``Verdict: Assistant A is better.``, ``Final verdict: a tie``).

Undecided: ``empty``, ``none`` (no verdict found), ``ambiguous``. Lenient prose parsing
(``lenient:label``, ``lenient:prose``) runs only on replies without any token and only when
``lenient=True``; it refuses a reply whose preference is negated (``lenient:negation``:
``Assistant A is not better than Assistant B`` is neither A nor reliably B) and one whose
signals disagree (``lenient:ambiguous``).

:func:`combine_orders` applies the MT-bench convention to the two orders of one pair.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from bpo.vocab import VERDICTS

_ROLE = r"(?:assistant|answer|response|model|output|option|candidate)"
# [[A]], [[ Assistant B ]], [[tie]], [ [C] ] -- the strong form the judge is asked for.
_DOUBLE = re.compile(rf"\[\s*\[\s*(?:{_ROLE}\s*)?([abc]|tie|draw)\s*\]\s*\]", re.IGNORECASE)
# [A], [Assistant B], [Tie] -- a judge that lost one bracket.
_SINGLE = re.compile(rf"\[\s*(?:{_ROLE}\s*)?([abc]|tie|draw)\s*\]", re.IGNORECASE)
# Words after which a judge states its verdict.
_LABEL = re.compile(
    r"\b(?:(?:final\s+)?(?:verdict|decision|judg(?:e)?ment|winner|conclusion|choice|preference)s?|final\s+answer)\b",
    re.IGNORECASE,
)
# Strict: after a label, nothing but the verdict up to the end of the line. Verdict letters
# must be capitals ("a tie" is not "A").
_LABEL_LETTER = re.compile(
    rf"^\s*(?i:is|=|:|-|—|–|would\s+be|goes\s+to)?\s*[:\-—–]?\s*(?i:that\s+)?(?i:the\s+)?(?i:{_ROLE}\s+)?"
    rf"[(\"'\[]*([ABC])[)\]\"']*"
    rf"(?:\s+(?i:is|was)\s+(?i:the\s+)?(?i:better|winner|superior|preferred|stronger)(?:\s+(?i:one|answer|response))?)?"
    rf"\s*[.!]?\s*$"
)
_LABEL_TIE = re.compile(
    r"^\s*(?:is|=|:|-|—|–|would\s+be)?\s*[:\-—–]?\s*(?:it'?s\s+|it\s+is\s+)?(?:a\s+)?[(\"'\[]*(tie|draw)[)\]\"']*\s*[.!]?\s*$",
    re.IGNORECASE,
)
_BARE = re.compile(rf"^[\s(\[\"'*]*(?i:{_ROLE}\s+)?([ABC]|(?i:tie|draw))[\s)\]\"'*.!]*$")

# Lenient prose: a letter right after a label (more may follow), explicit preferences, ties.
_LENIENT_LABEL = re.compile(
    rf"^\s*(?i:is|=|:|-|—|–|would\s+be|goes\s+to|here)?\s*[:\-—–]?\s*"
    rf"(?i:that\s+)?(?i:the\s+)?(?i:(?:{_ROLE})s?\s+)?[(\"'\[]*\s*([ABC])\b(?![\w'])"
)
_PREFER = re.compile(
    rf"(?:(?i:{_ROLE})\s+([AB])\s+(?i:is|was|provides|gives|offers|wins|performs|does)\b[^.\n]{{0,40}}?"
    rf"(?i:better|superior|preferred|preferable|the\s+winner|stronger|more\s+helpful|more\s+accurate))"
    rf"|(?:(?i:prefer|choose|pick|select|favou?r)\s+(?i:(?:{_ROLE})\s+)?([AB])\b)"
)
_TIE_PROSE = re.compile(
    r"\b(?:it'?s\s+a\s+tie|(?:is|a|as)\s+a\s+(?:tie|draw)|equally\s+(?:good|bad|helpful|strong|weak|poor|well|valid|"
    r"correct|accurate|useful)|neither\s+(?:assistant\s+|answer\s+|response\s+|one\s+)?is\s+(?:clearly\s+)?better|"
    r"no\s+clear\s+winner|both\s+(?:assistants|answers|responses)\s+are\s+(?:equally|similarly|comparably))",
    re.IGNORECASE,
)
_NEGATION = re.compile(r"n't\b|\b(?:not|never|no|hardly|cannot|nor)\b", re.IGNORECASE)
_NEGATION_WINDOW = 25  # characters before a preference verb searched for "would not choose"


@dataclass(frozen=True)
class Verdict:
    verdict: str | None  # "A" | "B" | "C" | None
    rule: str  # the rule that decided, or why nothing was decided (see the module docstring)
    reason: str | None = None  # None when decided; empty | no verdict | ambiguous (A/B) | negated preference


def _letter(token: str) -> str:
    token = token.strip().lower()
    return "C" if token in ("tie", "draw", "c") else token.upper()


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)  # fullwidth ［Ａ］ -> [A]
    for left in "【〖〚⟦":
        text = text.replace(left, "[[")
    for right in "】〗〛⟧":
        text = text.replace(right, "]]")
    return re.sub(r"\*\*|__|`", "", text)  # markdown emphasis / code around a verdict


def _ambiguous(letters, rule: str = "ambiguous") -> Verdict:
    return Verdict(None, rule, f"ambiguous ({'/'.join(sorted(set(letters)))})")


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _agreeing(decisions: list[str]) -> str | None:
    return decisions[0] if decisions and len(set(decisions)) == 1 else None


def _from_tokens(text: str, pattern: re.Pattern, prefix: str) -> Verdict:
    tokens = list(pattern.finditer(text))
    letters = [_letter(m.group(1)) for m in tokens]
    if len(set(letters)) == 1:
        return Verdict(letters[0], f"{prefix}sole_token")
    last_line = text.strip().rsplit("\n", 1)[-1].strip(" \t*.!\"'")
    final = pattern.fullmatch(last_line)
    decisions = [_letter(final.group(1))] if final else []
    for label in _LABEL.finditer(text):
        segment = text[label.end() : _line_end(text, label.end())]
        found = {_letter(m.group(1)) for m in pattern.finditer(segment)}
        if len(found) == 1:  # a line listing several verdicts quotes the options, it decides nothing
            decisions.append(found.pop())
    agreed = _agreeing(decisions)
    if agreed is None:
        return _ambiguous(letters, f"{prefix}ambiguous")
    return Verdict(agreed, f"{prefix}final_token" if final else f"{prefix}verdict_line")


def _from_labels(text: str) -> Verdict | None:
    decisions = []
    for label in _LABEL.finditer(text):
        rest = text[label.end() : _line_end(text, label.end())]
        m = _LABEL_LETTER.match(rest)
        if m:
            decisions.append(m.group(1))
        elif _LABEL_TIE.match(rest):
            decisions.append("C")
    if not decisions:
        return None
    agreed = _agreeing(decisions)
    return Verdict(agreed, "label") if agreed else _ambiguous(decisions)


def _lenient(text: str) -> Verdict:
    signals: list[str] = []
    for label in _LABEL.finditer(text):
        rest = text[label.end() : _line_end(text, label.end())]
        m = _LENIENT_LABEL.match(rest)
        if m:
            if _NEGATION.search(rest):
                return Verdict(None, "lenient:negation", "negated preference")
            signals.append(m.group(1))
    if signals:
        agreed = _agreeing(signals)
        return Verdict(agreed, "lenient:label") if agreed else _ambiguous(signals, "lenient:ambiguous")
    for m in _PREFER.finditer(text):
        if _NEGATION.search(text[max(0, m.start() - _NEGATION_WINDOW) : m.end()]):
            return Verdict(None, "lenient:negation", "negated preference")
        signals.append(m.group(1) or m.group(2))
    if _TIE_PROSE.search(text):
        signals.append("C")
    if not signals:
        return Verdict(None, "none", "no verdict")
    agreed = _agreeing(signals)
    return Verdict(agreed, "lenient:prose") if agreed else _ambiguous(signals, "lenient:ambiguous")


def parse_verdict(text: str | None, *, lenient: bool = False) -> Verdict:
    """The verdict in a judge reply: "A", "B", "C" (tie) or None, with the deciding rule."""
    if text is None or not text.strip():
        return Verdict(None, "empty", "empty")
    text = _normalise(text)
    for pattern, prefix in ((_DOUBLE, ""), (_SINGLE, "single_bracket:")):
        if pattern.search(text):
            # Tokens are what the judge was asked for: prose never overrides or resolves them.
            return _from_tokens(text, pattern, prefix)
    bare = _BARE.match(text)
    if bare:
        return Verdict(_letter(bare.group(1)), "bare")
    labelled = _from_labels(text)
    if labelled is not None:
        return labelled
    if lenient:
        return _lenient(text)
    return Verdict(None, "none", "no verdict")


# --- two orders ------------------------------------------------------------------------

# Order 1 shows the optimized answer as A; order 2 shows the original answer as A.
_PREF_OPTIMIZED_FIRST = {"A": "optimized", "B": "original", "C": "tie"}
_PREF_ORIGINAL_FIRST = {"A": "original", "B": "optimized", "C": "tie"}
_OUTCOME = {"optimized": "win", "original": "lose", "tie": "tie"}


@dataclass(frozen=True)
class PairOutcome:
    outcome: str  # win | tie | lose | invalid  (from the optimized answer's side)
    consistent: bool | None  # both orders name the same preference; None when invalid


def combine_orders(verdict_optimized_first: str | None, verdict_original_first: str | None) -> PairOutcome:
    """MT-bench rule: agreeing orders count, disagreeing orders are a tie, a missing verdict
    makes the pair invalid (counted and reported, not guessed)."""
    for v in (verdict_optimized_first, verdict_original_first):
        if v is not None and v not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS} or None, got {v!r}")
    if verdict_optimized_first is None or verdict_original_first is None:
        return PairOutcome("invalid", None)
    first = _PREF_OPTIMIZED_FIRST[verdict_optimized_first]
    second = _PREF_ORIGINAL_FIRST[verdict_original_first]
    if first == second:
        return PairOutcome(_OUTCOME[first], True)
    return PairOutcome("tie", False)
