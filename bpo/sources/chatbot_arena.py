"""LMSYS Chatbot Arena conversations: two models answer the same user turns; a judge
picks ``winner`` in {model_a, model_b, tie, tie (bothbad)}.

The winner's last answer is the good response, the loser's the bad one; ties are
dropped. Single-turn by default; with ``multi_turn`` the earlier turns of the
winner's conversation are the pair's ``history`` (the loser answered the same user turns
but saw its own earlier answers). Conversations flagged by OpenAI moderation or
either toxic-chat tagger are dropped unless ``drop_flagged`` is off.
"""

from __future__ import annotations

from functools import partial

import pyarrow as pa
from datasets import Features, List, Value

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

NAME = "chatbot_arena"
MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
_MESSAGE = {"content": Value("string"), "role": Value("string")}
FEATURES = Features(
    {
        "question_id": Value("string"),
        "model_a": Value("string"),
        "model_b": Value("string"),
        "winner": Value("string"),
        "judge": Value("string"),
        "conversation_a": List(_MESSAGE),
        "conversation_b": List(_MESSAGE),
        "turn": Value("int64"),
        "anony": Value("bool"),
        "language": Value("string"),
        "tstamp": Value("float64"),
        "openai_moderation": {
            "categories": {c: Value("bool") for c in MODERATION_CATEGORIES},
            "category_scores": {c: Value("float64") for c in MODERATION_CATEGORIES},
            "flagged": Value("bool"),
        },
        "toxic_chat_tag": {
            "roberta-large": {"flagged": Value("bool"), "probability": Value("float64")},
            "t5-large": {"flagged": Value("bool"), "score": Value("float64")},
        },
    }
)
COLUMNS = [
    "question_id",
    "model_a",
    "model_b",
    "winner",
    "conversation_a",
    "conversation_b",
    "language",
    "openai_moderation",
    "toxic_chat_tag",
]
_REQUIRED = ("question_id", "model_a", "model_b", "winner", "conversation_a", "conversation_b")
WINNERS = {"model_a", "model_b", "tie", "tie (bothbad)"}
_ROLES = {"user": USER, "assistant": ASSISTANT}


def _turns(conversation) -> list[tuple[str, str]] | None:
    """(role, text) turns, or None unless they alternate user/assistant from a user turn
    to an assistant answer."""
    if not conversation or len(conversation) % 2:
        return None
    turns = []
    for k, msg in enumerate(conversation):
        role = _ROLES.get(msg.get("role")) if isinstance(msg, dict) else None
        if role != (USER if k % 2 == 0 else ASSISTANT) or not isinstance(msg.get("content"), str):
            return None
        turns.append((role, msg["content"]))
    return turns


def _flagged(row: dict) -> bool:
    # a missing tag is no evidence either way: the conversation is kept
    mod = row["openai_moderation"] or {}
    tags = row["toxic_chat_tag"] or {}
    return bool(
        mod.get("flagged")
        or (tags.get("roberta-large") or {}).get("flagged")
        or (tags.get("t5-large") or {}).get("flagged")
    )


def parse(
    table: pa.Table, *, languages=("en",), multi_turn: bool = False, drop_flagged: bool = True, locate=None
) -> ParseResult:
    res = ParseResult(unit="conversation", locate=locate)
    gate = LanguageGate(languages, "sources.chatbot_arena.languages")
    for i, row in enumerate(table.to_pylist()):
        blame, lang = None, None
        missing = [k for k in _REQUIRED if row[k] is None]
        if missing:
            why, blame = "malformed_missing_field", missing[0]
        elif row["winner"] not in WINNERS:
            why, blame = "malformed_winner", "winner"
        else:
            turns_a, turns_b = _turns(row["conversation_a"]), _turns(row["conversation_b"])
            if turns_a is None or turns_b is None:
                why, blame = "malformed_turn_order", "conversation_a" if turns_a is None else "conversation_b"
            elif turns_a[::2] != turns_b[::2]:  # both models must answer the same user turns
                why = "malformed_conversations_differ"
            elif row["winner"].startswith("tie"):
                why = "tie"
            elif (lang := gate.resolve(turns_a[-2][1], partial(res.where, i), row["language"], has_label=True)) is None:
                why, blame = "language", "language"
            elif drop_flagged and _flagged(row):
                why = "flagged"
            elif len(turns_a) > 2 and not multi_turn:
                why = "multi_turn"
            else:
                why = None
        if why:
            res.drop(why, i, blame)
            continue
        if row["winner"] == "model_a":
            good, bad, good_model, bad_model = turns_a, turns_b, row["model_a"], row["model_b"]
        else:
            good, bad, good_model, bad_model = turns_b, turns_a, row["model_b"], row["model_a"]
        res.keep(
            i,
            pair(
                source_id=row["question_id"],
                instruction=good[-2][1],
                history=dialogue_history(good[:-2]),
                good=good[-1][1],
                bad=bad[-1][1],
                good_model=good_model,
                bad_model=bad_model,
                language=lang,
                num_turns=len(good) // 2,
            ),
        )
    gate.record(res)
    return res


def load(settings: dict) -> ParseResult:
    raw = read_source(NAME, settings, FEATURES, COLUMNS)
    res = parse(
        raw.table,
        languages=settings.get("languages", ["en"]),
        multi_turn=bool(settings.get("multi_turn", False)),
        drop_flagged=bool(settings.get("drop_flagged", True)),
        locate=raw.location,
    )
    return record_read(limit_history(res, settings.get("max_history_turns")), raw)
