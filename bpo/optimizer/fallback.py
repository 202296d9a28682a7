"""When an optimizer's output must not be used: the original prompt is kept, with the reason
(the ``fallback_reason`` column), so no prompt is ever lost or silently replaced by junk."""

from __future__ import annotations

import re

EMPTY_INPUT = "empty_input"
EMPTY = "empty_output"
TRUNCATED = "truncated"  # hit max_new_tokens without EOS: a cut rewrite loses information
REPETITION = "repetition"
TEMPLATE_ECHO = "template_echo"

_RUN = re.compile(r"(.{1,30}?)\1{7,}", re.S)  # a 1-30 char unit repeated 8+ times in a row
_LONG_CHAR_RUN = 40  # "=====" rules and "-----" separators are text; 40 of one character are not


def degenerate_reason(text: str, hit_limit: bool) -> str | None:
    """Why an optimizer output should not be used, or None when it is fine."""
    from bpo.prompt_format import TEMPLATE

    stripped = text.strip()
    if not stripped:
        return EMPTY
    if hit_limit:
        return TRUNCATED
    for m in _RUN.finditer(stripped):
        if len(set(m.group(1))) > 1 or len(m.group(0)) >= _LONG_CHAR_RUN:
            return REPETITION
    words = stripped.split()
    if len(words) >= 12:
        trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        if len(set(trigrams)) / len(trigrams) < 0.5:
            return REPETITION
    markers = [line for line in TEMPLATE.splitlines() if line.startswith("[") and line.endswith("]")]
    if any(m in stripped for m in markers):
        return TEMPLATE_ECHO
    return None
