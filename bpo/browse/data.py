"""The browser's rows: the evaluation's Parquet artifacts joined into one record per
(test set, optimizer, target, item).

Reads both layouts: today's (``eval/{testset}/optimized.parquet``, no optimizer or category
column) and the one with an optimizer level and category/protocol columns. Columns a layout
lacks get defaults (:data:`DEFAULT_OPTIMIZER`, category null), so the same loader serves both.
Inputs whose rows do not join are an error naming the file and item, never a silent drop.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from bpo.language import detect
from bpo.schemas import ANSWERS, CONVERSATIONS, JUDGMENTS, OPTIMIZED, TURN_JUDGMENTS, TURN_WINRATES, WINRATES
from bpo.vocab import OUTCOMES

# The old layout evaluated one optimizer: this workflow's trained one.
DEFAULT_OPTIMIZER = "trained"

# Columns the artifacts gained after the first layout (the optimizer level, categories, protocol,
# verdict rules; the report's counts, length control and fallbacks): read when a file has them.
# Every other column of the artifact's schema in bpo.schemas must be there.
LATER_COLUMNS = frozenset(
    {
        "optimizer",
        "category",
        "language",
        "protocol",
        "rule_optimized_first",
        "rule_original_first",
        "n_win",
        "n_tie",
        "n_lose",
        "lc_delta_wr",
        "lc_delta_wr_low",
        "lc_delta_wr_high",
        "lc_length_coef",
        "n_missing_answer",
        "n_judge_failed",
        "n_unparseable",
        "n_fallback",
        "fallback_reasons",
        "answer_backend",
        "turn",  # multi-turn win rates (winrates_turns.parquet)
        "comparison",
    }
)


class BrowseInputError(ValueError):
    """An input artifact is missing columns or its rows do not join."""


def _read(path: str | os.PathLike, schema: pa.Schema) -> list[dict]:
    """The rows of an artifact with ``schema``'s columns (those of :data:`LATER_COLUMNS` only if present)."""
    names = set(pq.read_schema(path).names)
    missing = [c for c in schema.names if c not in names and c not in LATER_COLUMNS]
    if missing:
        raise BrowseInputError(f"{path}: missing columns {missing}")
    return pq.read_table(path, columns=[c for c in schema.names if c in names]).to_pylist()


def words(text: str | None) -> int | None:
    """Answer length in whitespace-separated words, as the report counts it (None: no answer)."""
    return len(text.split()) if isinstance(text, str) else None


@dataclass(frozen=True)
class Row:
    testset: str
    optimizer: str
    target: str
    item_id: str
    category: str | None
    language: str  # of the original instruction (bpo.language; "und" when unclear), as the report's rows
    question_original: str
    question_optimized: str
    answer_original: str | None
    answer_optimized: str | None
    status_original: str
    status_optimized: str
    fallback_reason: str | None
    verdict_optimized_first: str | None
    verdict_original_first: str | None
    raw_optimized_first: str | None  # the judge's full reply: its rationale
    raw_original_first: str | None
    outcome: str
    protocol: str | None
    judge_model: str
    answer_backend: str  # "standin" where the offline stand-in answered
    judge_backend: str
    # multi-turn test sets: the turn, and each conversation before it (None: single-turn)
    turn: str | None = None
    history_original: str | None = None
    history_optimized: str | None = None
    # WINRATES.comparison: "model" = model `optimizer` (B, the *_optimized side) vs model `target`
    # (A) on the same prompt, the sft_data students; "prompt" otherwise
    comparison: str = "prompt"

    @property
    def len_original(self) -> int | None:
        return words(self.answer_original)

    @property
    def len_optimized(self) -> int | None:
        return words(self.answer_optimized)


def _key(r: dict, *fields: str) -> tuple:
    return tuple(r.get(f) if f != "optimizer" else (r.get("optimizer") or DEFAULT_OPTIMIZER) for f in fields)


def load_rows(
    optimized: Iterable[str | os.PathLike], answers: Iterable[str | os.PathLike], judgments: Iterable[str | os.PathLike]
) -> list[Row]:
    """One :class:`Row` per judged item, joined by (testset, optimizer, target, item_id); the
    optimized prompts by (testset, optimizer, item_id). Sorted by those keys."""
    opt: dict[tuple, dict] = {}
    for path in optimized:
        for r in _read(path, OPTIMIZED):
            opt[_key(r, "testset", "optimizer", "item_id")] = r
    ans: dict[tuple, tuple[dict, str]] = {}
    for path in answers:
        for r in _read(path, ANSWERS):
            ans[_key(r, "testset", "optimizer", "target", "item_id")] = (r, str(path))
    rows: list[Row] = []
    seen: set[tuple] = set()
    for path in judgments:
        for j in _read(path, JUDGMENTS):
            key = _key(j, "testset", "optimizer", "target", "item_id")
            if key not in ans:
                raise BrowseInputError(
                    f"{path}: item {key[3]!r} (test set {key[0]}, optimizer {key[1]}, "
                    f"target {key[2]}) has no row in the answers given"
                )
            a, _ = ans[key]
            o = opt.get(_key(j, "testset", "optimizer", "item_id"))
            if o is None:
                raise BrowseInputError(
                    f"{path}: item {key[3]!r} (test set {key[0]}, optimizer {key[1]}) "
                    "has no row in the optimized prompts given"
                )
            if j["outcome"] not in OUTCOMES:
                raise BrowseInputError(f"{path}: item {key[3]!r}: unknown outcome {j['outcome']!r}")
            seen.add(key)
            rows.append(
                _row(
                    key,
                    j,
                    a,
                    category=j.get("category") or a.get("category") or o.get("category"),
                    language=detect(o["instruction"]),
                    fallback_reason=o["fallback_reason"],
                )
            )
    unjudged = [(k, p) for k, (_, p) in ans.items() if k not in seen]
    if unjudged:
        (k, p), n = unjudged[0], len(unjudged)
        raise BrowseInputError(
            f"{p}: {n} answered item(s) have no judgment in the judgments given, first "
            f"{k[3]!r} (test set {k[0]}, optimizer {k[1]}, target {k[2]})"
        )
    rows.sort(key=lambda r: (r.testset, r.optimizer, r.target, r.item_id))
    return rows


def _row(key: tuple, j: dict, a: dict, **rest) -> Row:
    """The browser row of judgment ``j`` on answers ``a`` (an ANSWERS row or a CONVERSATIONS turn:
    the same answer columns) of cell ``key`` (testset, optimizer, target, item id, ...)."""
    return Row(
        testset=key[0],
        optimizer=key[1],
        target=key[2],
        item_id=key[3],
        question_original=a["question_original"],
        question_optimized=a["question_optimized"],
        answer_original=a["answer_original"],
        answer_optimized=a["answer_optimized"],
        status_original=a["status_original"],
        status_optimized=a["status_optimized"],
        verdict_optimized_first=j["verdict_optimized_first"],
        verdict_original_first=j["verdict_original_first"],
        raw_optimized_first=j["raw_optimized_first"],
        raw_original_first=j["raw_original_first"],
        outcome=j["outcome"],
        protocol=j.get("protocol"),
        judge_model=j["judge_model"],
        answer_backend=a["backend"],
        judge_backend=j["backend"],
        **rest,
    )


def _history(turns: list[dict], side: str) -> str | None:
    from bpo.eval.judge import transcript

    return transcript([(t[f"question_{side}"], t[f"answer_{side}"]) for t in turns]) if turns else None


def load_turn_rows(conversations: Iterable[str | os.PathLike], judgments: Iterable[str | os.PathLike]) -> list[Row]:
    """One :class:`Row` per judged turn of a multi-turn test set, with both conversations up to
    that turn (each with its own user messages); joined by (testset, optimizer, target, item, turn)."""
    conv: dict[tuple, dict] = {}
    for path in conversations:
        for r in _read(path, CONVERSATIONS):
            conv[_key(r, "testset", "optimizer", "target", "item_id", "turn")] = r
    rows: list[Row] = []
    for path in judgments:
        for j in _read(path, TURN_JUDGMENTS):
            key = _key(j, "testset", "optimizer", "target", "item_id", "turn")
            c = conv.get(key)
            if c is None:
                raise BrowseInputError(
                    f"{path}: item {key[3]!r} turn {key[4]} (test set {key[0]}, optimizer {key[1]}, "
                    f"target {key[2]}) has no row in the conversations given"
                )
            if j["outcome"] not in OUTCOMES:
                raise BrowseInputError(f"{path}: item {key[3]!r}: unknown outcome {j['outcome']!r}")
            earlier = [conv[(*key[:4], t)] for t in range(1, key[4]) if (*key[:4], t) in conv]
            rows.append(
                _row(
                    key,
                    j,
                    c,
                    category=j.get("category"),
                    language=detect(c["question_original"]),
                    fallback_reason=c["fallback_reason"],
                    turn=str(key[4]),
                    history_original=_history(earlier, "original"),
                    history_optimized=_history(earlier, "optimized"),
                )
            )
    rows.sort(key=lambda r: (r.testset, r.optimizer, r.target, r.item_id, int(r.turn)))
    return rows


# What the page shows of a win-rate row, in the order it embeds them; the rest stays out of the HTML.
WINRATE_SHOWN = (
    "comparison",
    "testset",
    "target",
    "judge_model",
    "n",
    "n_invalid",
    "win",
    "tie",
    "lose",
    "delta_wr",
    "delta_wr_low",
    "delta_wr_high",
    "backend",
    "optimizer",
    "category",
    "language",
    "lc_delta_wr",
    "lc_delta_wr_low",
    "lc_delta_wr_high",
    "turn",
)


def load_winrates(paths: Iterable[str | os.PathLike]) -> list[dict]:
    """The report's win-rate rows (optimizer filled in, category null = overall)."""
    out = []
    for path in paths:
        schema = TURN_WINRATES if "turn" in pq.read_schema(path).names else WINRATES
        for full in _read(path, schema):
            r = {k: full[k] for k in WINRATE_SHOWN if k in full}
            r["optimizer"] = r.get("optimizer") or DEFAULT_OPTIMIZER
            r["comparison"] = r.get("comparison") or "prompt"
            if r.get("category") == "all":
                r["category"] = None
            out.append(r)
    return out


def with_comparison(rows: list[Row], winrates: list[dict]) -> list[Row]:
    """Each row with the comparison kind the report gave its (test set, optimizer, target)."""
    kinds = {(w["testset"], w["optimizer"], w["target"]): w["comparison"] for w in winrates}
    return [dataclasses.replace(r, comparison=kinds.get((r.testset, r.optimizer, r.target), "prompt")) for r in rows]
