"""Anthropic hh-rlhf: ``chosen`` / ``rejected`` are whole dialogues that differ only in
the last Assistant turn.

    "\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ...\\n\\nAssistant: <differs>"

The instruction is the last Human turn, the responses are the two last Assistant
turns. Single-turn dialogues only by default; with ``multi_turn`` the earlier turns
become the pair's ``history`` (``max_history_turns`` bounds them). Plain string operations
over the two columns, no per-row pandas:
the 160,800 rows of the full train split parse in about a second of CPU
(benchmarks/bench_pairs.py).
"""

from __future__ import annotations

import re

import pyarrow as pa
from datasets import Features, Value

from bpo.sources.base import (
    ASSISTANT,
    USER,
    ParseResult,
    dialogue_history,
    limit_history,
    pair,
    read_source,
    record_read,
)
from bpo.sources.languages import detect_languages

NAME = "hh_rlhf"
FEATURES = Features({"chosen": Value("string"), "rejected": Value("string")})
COLUMNS = ["chosen", "rejected"]

HUMAN_MARK = "\n\nHuman:"
ASSISTANT_MARK = "\n\nAssistant:"
_TURN_SPLIT = re.compile(r"\n\n(Human|Assistant):")


def _earlier_turns(earlier: str) -> list[tuple[str, str]] | None:
    """Turns before the last Human turn, or None when they do not alternate Human/Assistant."""
    parts = _TURN_SPLIT.split(earlier)
    if parts[0] or len(parts) % 2 == 0:
        return None
    turns = []
    for k in range(1, len(parts), 2):
        role = USER if parts[k] == "Human" else ASSISTANT
        if role != (USER if (k // 2) % 2 == 0 else ASSISTANT):
            return None
        turns.append((role, parts[k + 1]))
    return turns if turns and turns[-1][0] == ASSISTANT else None


def parse(table: pa.Table, *, multi_turn: bool = False, locate=None) -> ParseResult:
    """Turn ``chosen``/``rejected`` columns into candidate pairs (source_id = row index);
    ``locate``: row index -> where it was read, for the drops."""
    res = ParseResult(unit="dialogue", locate=locate)
    chosen = table.column("chosen").to_pylist()
    rejected = table.column("rejected").to_pylist()
    for i, (c, r) in enumerate(zip(chosen, rejected)):
        found = _parse_row(i, c, r, multi_turn)
        if isinstance(found, dict):
            res.keep(i, found)
        else:
            res.drop(found[0], i, found[1])
    return res


def _parse_row(i: int, c: str | None, r: str | None, multi_turn: bool) -> dict | tuple[str, str | None]:
    """Row ``i``'s candidate pair, or why not: (reason, the field to blame or None)."""
    if c is None or r is None:
        return "malformed_missing_field", "chosen" if c is None else "rejected"
    prefix, sep, good = c.rpartition(ASSISTANT_MARK)
    prefix_r, sep_r, bad = r.rpartition(ASSISTANT_MARK)
    if not sep or not sep_r:
        return "malformed_no_assistant_turn", "chosen" if not sep else "rejected"
    if prefix != prefix_r:
        return "malformed_dialogues_differ", None
    if HUMAN_MARK in good or HUMAN_MARK in bad:  # the dialogue ends with a Human turn
        return "malformed_turn_order", "chosen" if HUMAN_MARK in good else "rejected"
    earlier, sep, instruction = prefix.rpartition(HUMAN_MARK)
    if not sep:
        return "malformed_no_human_turn", "chosen"
    if ASSISTANT_MARK in instruction:  # two Assistant turns in a row
        return "malformed_turn_order", "chosen"
    history: list[dict] = []
    num_turns = 1
    if earlier:
        if not earlier.startswith(HUMAN_MARK):
            return "malformed_text_before_first_turn", "chosen"
        num_turns += earlier.count(HUMAN_MARK)
        if not multi_turn:
            return "multi_turn", None
        turns = _earlier_turns(earlier)
        if turns is None:
            return "malformed_turn_order", "chosen"
        history = dialogue_history(turns)
    return pair(source_id=i, instruction=instruction, good=good, bad=bad, num_turns=num_turns, history=history)


def load(settings: dict) -> ParseResult:
    raw = read_source(NAME, settings, FEATURES, COLUMNS, data_dir=settings.get("hub_data_dir"))
    res = parse(raw.table, multi_turn=bool(settings.get("multi_turn", False)), locate=raw.location)
    res = limit_history(res, settings.get("max_history_turns"))
    detect_languages(res, settings.get("languages", "all"), f"sources.{NAME}.languages")
    return record_read(res, raw)  # unreadable rows are dialogues too
