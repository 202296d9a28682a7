"""What every source parser returns, and the shared rendering of earlier dialogue turns."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

# Candidate pairs carry these fields; bpo.pairs adds pair_id and source after cleaning.
CANDIDATE_FIELDS = (
    "source_id",
    "instruction",
    "context",
    "good_response",
    "bad_response",
    "good_model",
    "bad_model",
    "language",
    "num_turns",
)

USER, ASSISTANT = "User", "Assistant"


@dataclass
class ParseResult:
    """Candidate pairs of one source and the candidates that did not make it, by reason.

    ``unit`` says what a candidate is for this source (a dialogue row, a prompter
    message, an instruction), so ``candidates == len(pairs) + sum(dropped.values())``.
    ``other`` holds counts that are not candidates (e.g. oasst1 replies skipped).
    """

    unit: str
    pairs: list[dict] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    other: dict = field(default_factory=dict)
    origin: list[str] = field(default_factory=list)
    records_read: int = 0

    @property
    def candidates(self) -> int:
        return len(self.pairs) + sum(self.dropped.values())


def render_dialogue(turns: Iterable[tuple[str, str]]) -> str:
    """Earlier turns of a multi-turn dialogue as the pair's context, the same for every
    source: ``User: ...`` and ``Assistant: ...`` blocks separated by blank lines."""
    return "\n\n".join(f"{role}: {text.strip()}" for role, text in turns)


def pair(
    *,
    source_id,
    instruction: str,
    good: str,
    bad: str,
    context: str = "",
    good_model: str | None = None,
    bad_model: str | None = None,
    language: str | None = None,
    num_turns: int = 1,
) -> dict:
    return {
        "source_id": None if source_id is None else str(source_id),
        "instruction": instruction,
        "context": context,
        "good_response": good,
        "bad_response": bad,
        "good_model": good_model,
        "bad_model": bad_model,
        "language": language,
        "num_turns": num_turns,
    }


def language_filter(languages) -> frozenset | None:
    """None keeps every language (an empty list in config)."""
    return frozenset(languages) if languages else None
