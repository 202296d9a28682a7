"""Whether a rewrite of a conversation's last message copies the conversation instead.

A multi-turn rewrite (the critic's improved last message, the optimizer's output) may name what
an earlier turn said ("the poem you wrote about the sea"), but a run of :data:`SPAN` words
taken from an earlier turn, which the last message itself does not contain, is the conversation
restated (or the assistant's earlier answer repeated) rather than the message rewritten.
Shared by the SFT filter (``copies_history``) and the inference fallback (``repeats_history``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

SPAN = 8  # words in a row: long enough that a rewrite's own phrasing rarely matches by chance
_WORD = re.compile(r"\w+(?:['’]\w+)*", re.U)
# "User:" / "Assistant:" at a line start: the rendered conversation's role labels
ROLE_LINE = re.compile(r"(?:^|\n)\s*(?:user|assistant|system)\s*:", re.I)


def _spans(text: str, n: int) -> set[tuple[str, ...]]:
    words = [w.lower() for w in _WORD.findall(text)]
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def copies_history(text: str, original: str, history: Sequence[dict] | None, span: int = SPAN) -> bool:
    """True when ``text`` (a rewrite of ``original``) copies a ``span``-word run of an earlier
    turn of ``history`` that ``original`` does not have."""
    if not history:
        return False
    out = _spans(text, span) - _spans(original, span)
    if not out:
        return False
    return any(out & _spans(t["content"], span) for t in history)


def writes_role_labels(text: str, original: str) -> bool:
    """True when ``text`` has conversation role labels that ``original`` does not."""
    return bool(ROLE_LINE.search(text)) and not ROLE_LINE.search(original)
