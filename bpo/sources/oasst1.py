"""OpenAssistant oasst1: one row per message; trees through ``parent_id``; assistant
siblings ranked by ``rank`` (0 = most preferred, null = unranked).

For each prompter message (the candidate), the best- and worst-ranked assistant
replies make a pair. Deleted messages and messages that are not reviewed or failed
review are skipped, the prompter's language must be in ``languages`` (empty = any).
Root prompts only by default; with ``multi_turn`` a follow-up prompt keeps its
thread (root to parent) as the pair's ``history``, provided every message on it is usable
(``max_history_turns`` bounds it).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from functools import partial

import pyarrow as pa
from datasets import Features, List, Value

from bpo.drops import Drops
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
from bpo.sources.languages import LanguageGate

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


# The field behind a prompt's drop reason, where one is to blame.
_BLAME = {
    "deleted": "deleted",
    "not_reviewed": "review_result",
    "review_rejected": "review_result",
    "language": "lang",
    "multi_turn": "parent_id",
    "self_parent": "parent_id",
    "ancestor_missing": "parent_id",
    "tied_ranks": "rank",
    "unranked": "rank",
}


def _root_id(msg: dict, by_id: dict[str, dict]) -> str:
    """The id of the tree root above ``msg`` (the oasst1 message_tree_id), as far as it is known."""
    seen = {msg["message_id"]}
    while msg["parent_id"] and msg["parent_id"] in by_id and msg["parent_id"] not in seen:
        msg = by_id[msg["parent_id"]]
        seen.add(msg["message_id"])
    return msg["parent_id"] if msg["parent_id"] and msg["parent_id"] not in by_id else msg["message_id"]


def _in_test_share(msg: dict, by_id: dict[str, dict], share: float) -> bool:
    """``msg`` is in a tree the oasst1 test set holds out: a non-English root (by its label; the
    test set takes non-English roots only, so English trees all stay in training) in the share."""
    root = _root_id(msg, by_id)
    lang = by_id[root]["lang"] if root in by_id else msg["lang"]
    return str(lang or "en") != "en" and held_out(root, share)


def _usable(msg: dict) -> str | None:
    """None when the message may be used, else why not."""
    if msg["deleted"]:
        return "deleted"
    if msg["review_result"] is None:
        return "not_reviewed"
    if not msg["review_result"]:
        return "review_rejected"
    return None


def _malformed_field(msg: dict) -> str | None:
    """The field that makes a message unusable, or None."""
    if not msg["message_id"]:
        return "message_id"
    if msg["role"] not in ("prompter", "assistant"):
        return "role"
    return "text" if msg["text"] is None else None


def held_out(tree_id: str, share: float) -> bool:
    """Whether conversation tree ``tree_id`` (its root message id) belongs to the test share
    (``sources.oasst1.test_trees``; only non-English trees are held out): a fixed hash of the id,
    so the pairs stage and the ``oasst1`` test set agree without seeing each other, and no prompt
    is both trained on and tested."""
    if share <= 0:
        return False
    digest = hashlib.sha256(f"oasst1-test:{tree_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def parse(
    table: pa.Table, *, languages=("en",), multi_turn: bool = False, test_trees: float = 0.0, locate=None
) -> ParseResult:
    res = ParseResult(unit="prompter message", locate=locate)
    skipped = Drops()  # messages that are not candidates (replies, broken rows), located
    gate = LanguageGate(languages, "sources.oasst1.languages")

    by_id: dict[str, dict] = {}
    row_of: dict[str, int] = {}  # message id -> raw row, for locations
    replies: dict[str, list[dict]] = defaultdict(list)
    prompts: list[dict] = []
    for row, msg in enumerate(table.to_pylist()):
        bad_field = _malformed_field(msg)
        if bad_field:
            skipped.add("malformed_message", lambda row=row: res.where(row), bad_field)
            continue
        if msg["message_id"] in by_id:
            skipped.add("duplicate_message_id", lambda row=row: res.where(row), "message_id")
            continue
        by_id[msg["message_id"]] = msg
        row_of[msg["message_id"]] = row
        if msg["role"] == "prompter":
            prompts.append(msg)
        elif msg["parent_id"] == msg["message_id"]:  # a reply to itself: no prompt will ever see it
            skipped.add("self_parent", lambda row=row: res.where(row), "parent_id")
        elif msg["parent_id"]:
            replies[msg["parent_id"]].append(msg)
        else:  # an assistant message cannot start a tree
            skipped.add("malformed_message", lambda row=row: res.where(row), "parent_id")
    # replies that no prompt will ever look at are counted, not lost
    for parent_id, group in replies.items():
        parent = by_id.get(parent_id)
        if parent is None or parent["role"] != "prompter":
            reason = "reply_parent_missing" if parent is None else "reply_parent_not_prompter"
            for rep in group:
                skipped.add(reason, lambda rep=rep: res.where(row_of[rep["message_id"]]), "parent_id")

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
        why = "self_parent" if msg["parent_id"] == msg["message_id"] else _usable(msg)
        lang = None
        if why is None and test_trees > 0 and _in_test_share(msg, by_id, test_trees):
            why = "held_out_for_test"
        if why is None:
            lang = gate.resolve(msg["text"], partial(res.where, row_of[msg["message_id"]]), msg["lang"], has_label=True)
            why = "language" if lang is None else None
        if why is None and msg["parent_id"] and not multi_turn:
            why = "multi_turn"
        ranked = []
        if why is None:
            for rep in replies.get(msg["message_id"], ()):
                skip = _usable(rep)
                if skip is None and rep["rank"] is None:
                    skip = "unranked"
                if skip:
                    skipped.add(f"reply_{skip}", lambda rep=rep: res.where(row_of[rep["message_id"]]), _BLAME.get(skip))
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
            res.drop(why, row_of[msg["message_id"]], _BLAME.get(why))
            continue
        # min/max keep the first of equal ranks, in file order
        best = min(ranked, key=lambda r: r["rank"])
        worst = max(ranked, key=lambda r: r["rank"])
        history = dialogue_history((USER if m["role"] == "prompter" else ASSISTANT, m["text"]) for m in path)
        res.keep(
            row_of[msg["message_id"]],
            pair(
                source_id=msg["message_id"],
                instruction=msg["text"],
                history=history,
                good=best["text"],
                bad=worst["text"],
                good_model=best["model_name"],
                bad_model=worst["model_name"],
                language=lang,
                num_turns=1 + len(path) // 2,
            ),
        )
    if skipped:
        res.set_other("messages_skipped", skipped)
    gate.record(res)
    return res


def load(settings: dict) -> ParseResult:
    raw = read_source(NAME, settings, FEATURES, COLUMNS)
    res = parse(
        raw.table,
        languages=settings.get("languages", ["en"]),
        multi_turn=bool(settings.get("multi_turn", False)),
        test_trees=float(settings.get("test_trees", 0.0)),
        locate=raw.location,
    )
    # an unreadable row is a message, not a candidate prompt
    return record_read(limit_history(res, settings.get("max_history_turns")), raw, unreadable_as="messages_skipped")
