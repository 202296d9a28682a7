"""Pairwise verdicts: parse what a judge wrote, and combine the two presentation orders.

Judges are asked to end with ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie) but write verdicts in
many other ways: ``[[Assistant A]]``, ``**[[B]]**``, ``[A]``, ``【A】``, ``[[tie]]``,
``Final verdict: Assistant B``, ``Tie.``, or a template echo followed by the real choice.
:func:`parse_verdict` returns ``None`` with a reason when it cannot tell, so the caller can
count it; it never guesses between two different verdicts.

:func:`combine_orders` applies the MT-bench convention to the two orders of one pair.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

VERDICTS = ("A", "B", "C")

_ROLE = r"(?:assistant|answer|response|model|output|option|candidate)"
# [[A]], [[ Assistant B ]], [[tie]], [ [C] ] -- the strong form the judge is asked for.
_DOUBLE = re.compile(rf"\[\s*\[\s*(?:{_ROLE}\s*)?([abc]|tie|draw)\s*\]\s*\]", re.IGNORECASE)
# [A], [Assistant B], [Tie] -- a judge that lost one bracket.
_SINGLE = re.compile(rf"\[\s*(?:{_ROLE}\s*)?([abc]|tie|draw)\s*\]", re.IGNORECASE)
# "Final verdict", "My decision is" ... the label after which the real verdict follows.
_MARKER = re.compile(
    r"(?:final\s+)?(?:verdict|decision|judg(?:e)?ment|winner|conclusion|choice|preference)s?\b",
    re.IGNORECASE,
)
# Verdict letters in prose must be capitals: "a tie" is not "A".
_MARKED_LETTER = re.compile(
    rf"^\s*(?i:is|=|:|-|—|–|would\s+be|goes\s+to|here)?\s*[:\-—–]?\s*"
    rf"(?i:that\s+)?(?i:the\s+)?(?i:(?:{_ROLE})s?\s+)?[\(\"'\[]*\s*([ABC])\b(?![\w'])"
)
_MARKED_TIE = re.compile(
    r"^\s*(?:is|=|:|-|—|–|would\s+be)?\s*[:\-—–]?\s*(?:it'?s\s+|it\s+is\s+)?(?:a\s+)?[\(\"'\[]*\s*"
    r"(tie|draw|equal|both\s+(?:are\s+)?equally|neither)\b",
    re.IGNORECASE,
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
_BARE = re.compile(rf"^[\s\(\[\"'*]*(?i:(?:{_ROLE})\s+)?([ABC]|(?i:tie|draw))[\s\)\]\"'*.!]*$")


@dataclass(frozen=True)
class ParsedVerdict:
    verdict: str | None  # "A" | "B" | "C" | None
    reason: str | None = None  # why None: empty | no verdict | ambiguous (...)
    rule: str = ""  # which rule decided, for the record


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


def _resolve(text: str, matches: list[re.Match], rule: str) -> ParsedVerdict:
    """One verdict from several bracket tokens: unanimous, after the last marker, or closing."""
    letters = [_letter(m.group(1)) for m in matches]
    if len(set(letters)) == 1:
        return ParsedVerdict(letters[0], rule=rule)
    markers = list(_MARKER.finditer(text))
    if markers:
        after = [_letter(m.group(1)) for m in matches if m.start() >= markers[-1].end()]
        if len(set(after)) == 1:
            return ParsedVerdict(after[0], rule=f"{rule} after marker")
    # The judge was told to end with the verdict: a token closing the reply is its choice
    # (it may have quoted the options before).
    tail = text[matches[-1].end():]
    if not re.sub(r"[\s.!*\"')\]]", "", tail):
        return ParsedVerdict(letters[-1], rule=f"{rule} closing")
    return ParsedVerdict(None, reason=f"ambiguous ({'/'.join(sorted(set(letters)))})", rule=rule)


# The result of :func:`parse_verdict`: ``.verdict`` and ``.rule`` (the rule that decided).
Verdict = ParsedVerdict
_TOKEN_RULES = ("[[X]]", "[X]", "bare")


def parse_verdict(text: str | None, *, lenient: bool = False) -> Verdict:
    """The verdict in a judge reply: "A", "B", "C" (tie) or None with the reason; ``.rule``
    names the rule that decided ('none' when none did). Strict by default: only a verdict
    token (or a bare letter) counts; prose rules run only with ``lenient`` and their rule
    names start with ``lenient:``."""
    parsed = _parse_any(text)
    if parsed.verdict is None:
        return ParsedVerdict(None, reason=parsed.reason, rule="none")
    if parsed.rule.startswith(_TOKEN_RULES):
        return parsed
    if lenient:
        return ParsedVerdict(parsed.verdict, rule=f"lenient:{parsed.rule}")
    return ParsedVerdict(None, reason="no verdict token (prose parsing is off: eval.judge.lenient_verdicts)",
                         rule="none")


def _parse_any(text: str | None) -> ParsedVerdict:
    """Every rule, tokens first, then prose."""
    if text is None or not text.strip():
        return ParsedVerdict(None, reason="empty")
    text = _normalise(text)
    for pattern, rule in ((_DOUBLE, "[[X]]"), (_SINGLE, "[X]")):
        found = list(pattern.finditer(text))
        if found:
            return _resolve(text, found, rule)

    bare = _BARE.match(text)
    if bare:
        return ParsedVerdict(_letter(bare.group(1)), rule="bare")

    # Prose: a verdict after the last marker wins; otherwise every signal must agree.
    for marker in reversed(list(_MARKER.finditer(text))):
        rest = text[marker.end():]
        m = _MARKED_LETTER.match(rest)
        if m:
            return ParsedVerdict(m.group(1), rule="marker letter")
        if _MARKED_TIE.match(rest):
            return ParsedVerdict("C", rule="marker tie")
    signals = {m.group(1) or m.group(2) for m in _PREFER.finditer(text)}
    if _TIE_PROSE.search(text):
        signals.add("C")
    if len(signals) == 1:
        return ParsedVerdict(signals.pop(), rule="prose")
    if signals:
        return ParsedVerdict(None, reason=f"ambiguous ({'/'.join(sorted(signals))})", rule="prose")
    return ParsedVerdict(None, reason="no verdict")


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
