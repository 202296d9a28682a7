"""OpenAssistant oasst1: one row per message; trees through ``parent_id``; assistant
siblings ranked by ``rank`` (0 = most preferred, null = unranked).

For each prompter message (the candidate), the best- and worst-ranked assistant
replies make a pair. Deleted messages and messages that are not reviewed or failed
review are skipped, the prompter's language must be in ``languages`` (empty = any).
Root prompts only by default; with ``multi_turn`` a follow-up prompt keeps its
thread (root to parent) as the context, provided every message on it is usable.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pyarrow as pa
from datasets import Features, List, Value

from bpo.sources.base import (
    ASSISTANT,
    USER,
    ParseResult,
    language_filter,
    pair,
    read_source,
    record_read,
    render_dialogue,
)

NAME = "oasst1"
FEATURES = Features(
    {
        "message_id": Value("string"),
        "parent_id": Value("string"),
        "user_id": Value("string"),
        "created_date": Value("string"),
        "text": Value("string"),
        "role": Value("string"),
        "lang": Value("string"),
        "review_count": Value("int32"),
        "review_result": Value("bool"),
        "deleted": Value("bool"),
        "rank": Value("int32"),
        "synthetic": Value("bool"),
        "model_name": Value("string"),
        "detoxify": {
            k: Value("float64")
            for k in (
                "toxicity",
                "severe_toxicity",
                "obscene",
                "identity_attack",
                "insult",
                "threat",
                "sexual_explicit",
            )
        },
        "message_tree_id": Value("string"),
        "tree_state": Value("string"),
        "emojis": {"name": List(Value("string")), "count": List(Value("int32"))},
        "labels": {"name": List(Value("string")), "value": List(Value("float64")), "count": List(Value("int32"))},
    }
)
COLUMNS = ["message_id", "parent_id", "text", "role", "lang", "review_result", "deleted", "rank", "model_name"]


def _usable(msg: dict) -> str | None:
    """None when the message may be used, else why not."""
    if msg["deleted"]:
        return "deleted"
    if msg["review_result"] is None:
        return "not_reviewed"
    if not msg["review_result"]:
        return "review_rejected"
    return None


def parse(table: pa.Table, *, languages=("en",), multi_turn: bool = False) -> ParseResult:
    res = ParseResult(unit="prompter message")
    skipped: Counter = Counter()  # messages that are not candidates (replies, broken rows)
    keep_lang = language_filter(languages)

    by_id: dict[str, dict] = {}
    replies: dict[str, list[dict]] = defaultdict(list)
    prompts: list[dict] = []
    for msg in table.to_pylist():
        if not msg["message_id"] or msg["role"] not in ("prompter", "assistant") or msg["text"] is None:
            skipped["malformed_message"] += 1
            continue
        if msg["message_id"] in by_id:
            skipped["duplicate_message_id"] += 1
            continue
        by_id[msg["message_id"]] = msg
        if msg["role"] == "prompter":
            prompts.append(msg)
        elif msg["parent_id"]:
            replies[msg["parent_id"]].append(msg)
        else:
            skipped["malformed_message"] += 1  # an assistant message cannot start a tree

    def thread(msg: dict) -> list[dict] | str:
        """Messages from the root down to ``msg``'s parent, or the reason it is unusable."""
        path, seen = [], {msg["message_id"]}
        parent = msg["parent_id"]
        while parent:
            node = by_id.get(parent)
            if node is None:
                return "ancestor_missing"
            if node["message_id"] in seen:
                return "malformed_cycle"
            seen.add(node["message_id"])
            if _usable(node):
                return "ancestor_skipped"
            path.append(node)
            parent = node["parent_id"]
        path.reverse()
        roles = [m["role"] for m in path]
        if roles != ["prompter", "assistant"] * (len(path) // 2):
            return "malformed_turn_order"
        return path

    for msg in prompts:
        why = _usable(msg)
        if why is None and keep_lang is not None and msg["lang"] not in keep_lang:
            why = "language"
        if why is None and msg["parent_id"] and not multi_turn:
            why = "multi_turn"
        ranked = []
        if why is None:
            for rep in replies.get(msg["message_id"], ()):
                skip = _usable(rep)
                if skip is None and rep["rank"] is None:
                    skip = "unranked"
                if skip:
                    skipped[f"reply_{skip}"] += 1
                else:
                    ranked.append(rep)
            if len(ranked) < 2:
                why = "fewer_than_2_ranked_replies"
            elif len({r["rank"] for r in ranked}) < 2:
                why = "tied_ranks"
        path: list[dict] = []
        if why is None and msg["parent_id"]:
            found = thread(msg)
            if isinstance(found, str):
                why = found
            else:
                path = found
        if why:
            res.dropped[why] += 1
            continue
        # min/max keep the first of equal ranks, in file order
        best = min(ranked, key=lambda r: r["rank"])
        worst = max(ranked, key=lambda r: r["rank"])
        context = render_dialogue((USER if m["role"] == "prompter" else ASSISTANT, m["text"]) for m in path)
        res.pairs.append(
            pair(
                source_id=msg["message_id"],
                instruction=msg["text"],
                context=context,
                good=best["text"],
                bad=worst["text"],
                good_model=best["model_name"],
                bad_model=worst["model_name"],
                language=msg["lang"],
                num_turns=1 + len(path) // 2,
            )
        )
    if skipped:
        res.other["messages_skipped"] = dict(sorted(skipped.items()))
    return res


def load(settings: dict) -> ParseResult:
    raw = read_source(NAME, settings, FEATURES, COLUMNS)
    res = parse(
        raw.table,
        languages=settings.get("languages", ["en"]),
        multi_turn=bool(settings.get("multi_turn", False)),
    )
    # an unreadable row is a message, not a candidate prompt
    return record_read(res, raw, unreadable_as="messages_skipped")
