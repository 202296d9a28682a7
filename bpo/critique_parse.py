"""Parse a critique reply into (comparison, optimized instruction).

The expected reply is::

    Detailed Comparison Result: <text>
    Optimized Instruction: <text> [END]

Real replies drift from it: markdown (``**Optimized Instruction:**``, ``## Optimized
instruction``), other casing or spelling, the label on its own line, quotes or code fences
around the instruction, a missing ``[END]``, chatter after the instruction, the two parts in
the other order. The parser is plain string and regex work on the text (nothing is evaluated)
and never raises on any string: failures come back as ``parse_error``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ParsedCritique", "parse_critique", "strip_wrapping"]

# Markdown decoration that may surround a label: bold/italic stars, underscores, heading hashes.
_DECOR = r"[*_#>` \t]*"  # no newlines: keeps the scan linear on long blank runs

_OPT_LABEL = r"optimi[sz]ed[ \t]+(?:instruction|prompt)"
_CMP_LABEL = r"(?:detailed[ \t]+)?comparison(?:[ \t]+results?)?"

# A label is either followed by a colon (possibly inside the bold markers: "**Label:**") or
# sits alone on its line (a heading). Requiring one of the two keeps prose such as "the
# optimized instruction should ..." from being taken for the label.
_SEP = r"(?:[:：]|[-–—](?=[ \t]))"
_LABEL_TAIL = rf"(?:[ \t]*[*_]*[ \t]*{_SEP}[*_]*|[*_]*[ \t]*(?=\n|\Z))"


def _label_re(label: str) -> re.Pattern[str]:
    # Optional list bullet ("- ", "1. ") before the label, with markdown around either.
    return re.compile(
        rf"(?P<lead>^|\n){_DECOR}(?:[-+•][ \t]+{_DECOR})?(?:\d+[.)]{_DECOR})?{label}{_LABEL_TAIL}", re.IGNORECASE
    )


_OPT_AT_LINE = _label_re(_OPT_LABEL)
_CMP_AT_LINE = _label_re(_CMP_LABEL)
# Fallback for replies squeezed onto one line: the label mid-line, but only with a colon.
_OPT_INLINE = re.compile(rf"\b{_OPT_LABEL}[ \t]*[*_]*[ \t]*[:：][*_]*", re.IGNORECASE)
_CMP_INLINE = re.compile(r"\bdetailed[ \t]+comparison(?:[ \t]+results?)?[ \t]*[*_]*[ \t]*[:：][*_]*", re.IGNORECASE)

# End marker: [END], [end], [ END ], <END>; decoration around it (**[END]**) is trimmed after.
# No leading quantifier, so a long run of "*" cannot make the search quadratic.
_END = re.compile(r"\[[ \t]*end[ \t]*\]|<[ \t]*end[ \t]*>", re.IGNORECASE)

# Lines that start commentary after an unterminated instruction ("Note: ...", "Explanation:").
_TRAILER = re.compile(
    r"\n[ \t]*\n" + _DECOR + r"(?:note|notes|explanation|rationale|reasoning|comment|comments"
    r"|changes(?: made)?|why this (?:is better|works)|this (?:optimized|revised|rewritten) (?:instruction|prompt))"
    r"\b[^\n]*",
    re.IGNORECASE,
)

_MAX_UNWRAP = 4
_PAIRED_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "「": "」", "`": "`"}


@dataclass(frozen=True)
class ParsedCritique:
    comparison: str | None
    optimized_instruction: str | None  # None when the reply cannot be parsed
    parse_error: str | None  # None when the reply followed the format exactly

    @property
    def ok(self) -> bool:
        return self.optimized_instruction is not None


def _find(at_line: re.Pattern[str], inline: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    spans = [(m.start() + len(m.group("lead")), m.end()) for m in at_line.finditer(text)]
    if not spans:
        spans = [m.span() for m in inline.finditer(text)]
    return spans


def _balanced(inner: str, open_q: str, close_q: str) -> bool:
    """Whether ``inner`` can stand between an outer pair of quotes without breaking the pair."""
    if open_q == close_q:
        # The same character opens and closes: any occurrence inside makes the outer pair
        # ambiguous ('"a" and "b"'), so only unquoted content counts as wrapped.
        return open_q not in inner
    depth = 0
    for ch in inner:
        if ch == open_q:
            depth += 1
        elif ch == close_q:
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def strip_wrapping(text: str) -> str:
    """Remove code fences, bold markers and quotes that wrap the whole text (repeatedly)."""
    text = text.strip()
    for _ in range(_MAX_UNWRAP):  # bounded: nested wrappers never cost more than a few passes
        prev = text
        fence = re.fullmatch(r"```[^\n`]*\n(.*?)\n?```", text, re.DOTALL)
        if fence:
            text = fence.group(1).strip()
            continue
        bold = re.fullmatch(r"(\*\*|__)(.+)\1", text, re.DOTALL)
        if bold and bold.group(1) not in bold.group(2):
            text = bold.group(2).strip()
            continue
        if len(text) >= 2 and text[0] in _PAIRED_QUOTES and text[-1] == _PAIRED_QUOTES[text[0]]:
            inner = text[1:-1]
            if inner.strip() and _balanced(inner, text[0], text[-1]):
                text = inner.strip()
                continue
        # A lone opening double quote whose partner fell beyond [END] ('"Write a poem [END]"').
        # Single quotes are left alone: "'Tis" starts with one legitimately.
        if text[:1] in ('"', "“") and text.count(text[0]) == 1 and _PAIRED_QUOTES[text[0]] not in text[1:]:
            text = text[1:].strip()
        if text == prev:
            break
    return text


def _clean_comparison(text: str) -> str | None:
    text = _END.sub("", text).strip().lstrip("*_ \t").rstrip("*_#` \t\n").strip()
    return text or None


def _drop_marker_decoration(body: str) -> str:
    """Trim markdown that belonged to the end marker ("Do it **[END]**"), but not the closing
    half of markup around the instruction itself ("**Do it**[END]")."""
    body = body.rstrip()
    candidate = body.rstrip("*_`")
    if candidate != body and candidate.count("**") % 2 == 0 and candidate.count("`") % 2 == 0:
        return candidate.rstrip()
    return body


def parse_critique(reply: str | None) -> ParsedCritique:
    """Parse one critique reply. Never raises; see :class:`ParsedCritique`."""
    if reply is None or not isinstance(reply, str) or not reply.strip():
        return ParsedCritique(None, None, "empty reply")
    text = reply.replace("\r\n", "\n").replace("\r", "\n")

    opt_spans = _find(_OPT_AT_LINE, _OPT_INLINE, text)
    cmp_spans = _find(_CMP_AT_LINE, _CMP_INLINE, text)
    problems: list[str] = []

    comparison = None
    if cmp_spans:
        _, c_end = cmp_spans[0]
        # The comparison runs to the next label, whichever order the two parts come in.
        nxt = [s for s, _ in opt_spans if s >= c_end]
        comparison = _clean_comparison(text[c_end : nxt[0] if nxt else len(text)])

    if not opt_spans:
        return ParsedCritique(comparison, None, "no 'Optimized Instruction:' label")
    if len(opt_spans) > 1:
        problems.append(f"{len(opt_spans)} 'Optimized Instruction' labels, used the first")
    o_start, o_end = opt_spans[0]
    body = text[o_end:]

    end = _END.search(body)
    if end:
        body = _drop_marker_decoration(body[: end.start()])
    else:
        problems.append("no [END] marker")
        # Without [END] the instruction runs to the next part of the reply, if any.
        later_cmp = [s - o_end for s, _ in cmp_spans if s >= o_end]
        if later_cmp:
            body = body[: later_cmp[0]]
        trailer = _TRAILER.search(body)
        if trailer:
            body = body[: trailer.start()]
            problems.append("dropped commentary after the instruction")

    if not cmp_spans:
        problems.append("no 'Detailed Comparison Result:' label")
        # Unlabelled text before the instruction is the model's comparison in all but name.
        comparison = _clean_comparison(text[:o_start])

    optimized = strip_wrapping(body)
    if not optimized:
        return ParsedCritique(comparison, None, "empty optimized instruction")
    return ParsedCritique(comparison, optimized, "; ".join(problems) or None)
