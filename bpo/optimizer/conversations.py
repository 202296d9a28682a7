"""``bpo optimize --input`` on OpenAI-style conversations (multi-turn BPO, messages mode).

Each record of the input holds ``messages`` (the chat API's list of ``{role, content}``). The last
user message is rewritten with the earlier turns as its history (:mod:`bpo.conversation`:
system messages only with ``include_system``), through :func:`bpo.optimizer.optimize_prompts`,
the same path as single prompts; every other message is copied unchanged. The output is JSONL in
the input's shape: the record with its ``messages`` rewritten and a ``bpo`` field (original,
rewrite, fallback reason, history turns left out by the budget), so it can be sent as it is.

A record that cannot be used is a counted, located drop: not an object with a ``messages`` list
(``malformed_missing_field``/``malformed_wrong_type``), a message that is not an object with a
role (``malformed_message``), or no user message with text to rewrite (``no_user_message``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bpo.atomic import atomic_path
from bpo.conversation import earlier_turns, last_user_text, replace_text
from bpo.drops import Drops


@dataclass(frozen=True)
class Conversation:
    number: int  # the record's number in the file
    record: dict  # the record as read
    index: int  # of the last user message
    part: int | None  # its text part, None for a string content
    prompt: str  # its text
    history: list[dict]  # the earlier turns the optimizer sees


def _problem(record) -> tuple[str, str] | None:
    if not isinstance(record, dict) or "messages" not in record:
        return "malformed_missing_field", "messages"
    messages = record["messages"]
    if not isinstance(messages, list):
        return "malformed_wrong_type", "messages"
    if any(not isinstance(m, dict) or not isinstance(m.get("role"), str) for m in messages):
        return "malformed_message", "messages"
    if last_user_text(messages) is None:
        return "no_user_message", "messages"
    return None


def read_input_records(path: str | Path):
    """The records of a ``bpo optimize --input`` file (:func:`bpo.readers.read_records`); a
    missing or unreadable file is an error naming ``--input``."""
    from bpo.readers import ReadError, read_records

    if not Path(path).exists():
        raise FileNotFoundError(f"--input {path}: no such file")
    try:
        return read_records(path)
    except ReadError as exc:
        raise ValueError(f"--input {exc}") from None


def read_conversations(path: str | Path, include_system: bool = False) -> tuple[list[Conversation], Drops]:
    """The usable conversations of ``path`` (jsonl/json/parquet, as ``bpo optimize --input``
    reads) and the drops, located (file:line)."""
    records = read_input_records(path)
    out = []
    for i, row in enumerate(records.rows):
        problem = _problem(row)
        if problem:
            records.count_drop(problem[0], records.location(i), problem[1])
            continue
        index, part, text = last_user_text(row["messages"])
        out.append(
            Conversation(
                records.numbers[i], row, index, part, text, earlier_turns(row["messages"], index, include_system)
            )
        )
    return out, records.dropped


def is_messages_file(path: str | Path) -> bool:
    """Whether the first readable record of ``path`` has a ``messages`` field."""
    from bpo.readers import ReadError, read_records

    try:
        records = read_records(path)
    except (ReadError, OSError):
        return False
    return bool(records.rows) and isinstance(records.rows[0], dict) and "messages" in records.rows[0]


def rewrite_conversations(
    conversations: Sequence[Conversation],
    model: str,
    settings,
    *,
    format_override: str | None = None,
    max_history_tokens: int | None = None,
) -> list[dict]:
    """The output records: each conversation with its last user message rewritten (the original
    kept on fallback) and a ``bpo`` audit field."""
    from bpo.optimizer import optimize_prompts

    rewrites = optimize_prompts(
        model,
        [c.prompt for c in conversations],
        settings,
        format_override=format_override,
        histories=[c.history for c in conversations],
        max_history_tokens=max_history_tokens,
    )
    out = []
    for c, r in zip(conversations, rewrites.results):
        messages = c.record["messages"]
        if r.fallback_reason is None and r.text != c.prompt:
            messages = replace_text(messages, c.index, c.part, r.text)
        audit = {
            "record": c.number,
            "original": c.prompt,
            "rewrite": r.text,
            "fallback_reason": r.fallback_reason,
            "history_turns": len(c.history),
            "history_turns_cut": r.history_cut,
        }
        out.append({**c.record, "messages": messages, "bpo": audit})
    return out


def write_jsonl(records: Sequence[dict], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
