"""One Parquet schema per artifact, declared once.

Writers call :func:`write_table` and readers :func:`read_table`; both check the
columns against the schema here, so a stage that drifts from its contract fails
at the write, not three stages later.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bpo.atomic import atomic_path

_str = pa.string()
_i64 = pa.int64()
_f64 = pa.float64()
# Earlier turns of a conversation, oldest first (bpo.history.check_history's shape).
HISTORY = pa.list_(pa.struct([pa.field("role", _str, nullable=False), pa.field("content", _str, nullable=False)]))

# results/pairs/{source}.parquet and results/pairs/all.parquet
PAIRS = pa.schema(
    [
        pa.field("pair_id", _str, nullable=False),  # sha256 of the content, 16 hex chars
        pa.field("source", _str, nullable=False),  # hh_rlhf | oasst1 | chatbot_arena | alpaca_gpt4
        pa.field("source_id", _str),  # id in the raw dataset (row index, message id, question id)
        pa.field("instruction", _str, nullable=False),
        pa.field("context", _str, nullable=False),  # "" when none; never rewritten later
        pa.field("good_response", _str, nullable=False),
        pa.field("bad_response", _str, nullable=False),
        pa.field("good_model", _str),  # null when unknown
        pa.field("bad_model", _str),
        pa.field("language", _str),  # ISO 639-1 ("en", "zh"), or "und" when undetermined (bpo.sources.languages)
        pa.field("num_turns", _i64, nullable=False),  # human turns in the dialogue, 1 = single-turn
        # the turns before `instruction` (multi_turn sources), [] for single-turn; never in `context`
        pa.field("history", HISTORY, nullable=False),
        pa.field("history_chars", _i64, nullable=False),  # length of the rendered history, characters
    ]
)

# results/critiques/{source}.parquet
CRITIQUES = pa.schema(
    [
        pa.field("pair_id", _str, nullable=False),
        pa.field("source", _str, nullable=False),
        pa.field("request_key", _str, nullable=False),  # LLM cache key of the call
        pa.field("model", _str, nullable=False),
        pa.field("status", _str, nullable=False),  # ok | truncated | refused | error
        pa.field("raw_reply", _str),
        pa.field("comparison", _str),  # parsed "Detailed Comparison Result"
        pa.field("optimized_instruction", _str),  # parsed, null on parse failure
        pa.field("parse_error", _str),  # null when parsed cleanly
        pa.field("prompt_tokens", _i64),
        pa.field("completion_tokens", _i64),
        pa.field("backend", _str, nullable=False),  # openai | replay | standin
    ]
)

# results/sft/train.parquet and results/sft/val.parquet
SFT = pa.schema(
    [
        pa.field("pair_id", _str, nullable=False),
        pa.field("source", _str, nullable=False),
        pa.field("prompt", _str, nullable=False),  # original instruction (+ context, verbatim)
        pa.field("optimized_prompt", _str, nullable=False),  # rewritten instruction (+ same context)
        pa.field("history", HISTORY, nullable=False),  # the pair's earlier turns, [] for single-turn
    ]
)

# results/<run>/models/optimizer_metrics/train_metrics.parquet
TRAIN_METRICS = pa.schema(
    [
        pa.field("step", _i64, nullable=False),
        pa.field("epoch", _f64),
        pa.field("loss", _f64),
        pa.field("eval_loss", _f64),
        pa.field("learning_rate", _f64),
        pa.field("grad_norm", _f64),
        pa.field("tokens_per_second", _f64),
    ]
)

# results/<run>/eval/{testset}/{optimizer}/optimized.parquet (also the `bpo optimize` file mode output)
OPTIMIZED = pa.schema(
    [
        pa.field("item_id", _str, nullable=False),
        pa.field("testset", _str, nullable=False),
        pa.field("optimizer", _str, nullable=False),  # name under eval.optimizers
        pa.field("category", _str),  # the test set's category (Vicuna, Self-Instruct, Dolly), else null
        pa.field("instruction", _str, nullable=False),
        pa.field("context", _str, nullable=False),
        pa.field("optimized_instruction", _str, nullable=False),  # == instruction on fallback
        pa.field("fallback_reason", _str),  # null when the optimizer output was used
        pa.field("reference_optimized", _str),  # BPO test set reference rewrite, else null
    ]
)

# results/<run>/eval/{testset}/{target}/original_answers.parquet: a target's answers to the
# original questions, once per test set, shared by every optimizer's comparison
ORIGINAL_ANSWERS = pa.schema(
    [
        pa.field("item_id", _str, nullable=False),
        pa.field("testset", _str, nullable=False),
        pa.field("target", _str, nullable=False),
        pa.field("category", _str),
        pa.field("question", _str, nullable=False),  # instruction + context as shown
        pa.field("answer", _str),
        pa.field("status", _str, nullable=False),
        pa.field("backend", _str, nullable=False),
    ]
)

# results/<run>/eval/{testset}/{optimizer}/{target}/answers.parquet
ANSWERS = pa.schema(
    [
        pa.field("item_id", _str, nullable=False),
        pa.field("testset", _str, nullable=False),
        pa.field("optimizer", _str, nullable=False),
        pa.field("target", _str, nullable=False),
        pa.field("category", _str),
        pa.field("question_original", _str, nullable=False),  # instruction + context as shown
        pa.field("question_optimized", _str, nullable=False),
        pa.field("answer_original", _str),  # from original_answers.parquet
        pa.field("answer_optimized", _str),
        pa.field("status_original", _str, nullable=False),
        pa.field("status_optimized", _str, nullable=False),
        pa.field("backend", _str, nullable=False),
    ]
)

# results/<run>/eval/{testset}/{optimizer}/{target}/judgments.parquet
JUDGMENTS = pa.schema(
    [
        pa.field("item_id", _str, nullable=False),
        pa.field("testset", _str, nullable=False),
        pa.field("optimizer", _str, nullable=False),
        pa.field("target", _str, nullable=False),
        pa.field("category", _str),
        pa.field("judge_model", _str, nullable=False),
        pa.field("protocol", _str, nullable=False),  # both_orders | single_random
        pa.field("verdict_optimized_first", _str),  # A | B | C | null (unparseable, or order not judged)
        pa.field("verdict_original_first", _str),
        pa.field("outcome", _str, nullable=False),  # win | tie | lose | invalid (for optimized)
        pa.field("raw_optimized_first", _str),
        pa.field("raw_original_first", _str),
        pa.field("rule_optimized_first", _str),  # the parser rule that decided; null: order not judged
        pa.field("rule_original_first", _str),
        pa.field("backend", _str, nullable=False),
    ]
)

# Multi-turn test sets (format mt_bench), one row per (item, turn); turn 1 is the first user message.
# results/<run>/eval/{testset}/{target}/original_conversations.parquet: the target's conversation
# on the original user messages, once per test set and target
ORIGINAL_CONVERSATIONS = pa.schema(
    [
        pa.field("item_id", _str, nullable=False),
        pa.field("testset", _str, nullable=False),
        pa.field("target", _str, nullable=False),
        pa.field("category", _str),
        pa.field("turn", _i64, nullable=False),
        pa.field("question", _str, nullable=False),  # the user's message of this turn, as written
        pa.field("answer", _str),
        pa.field("status", _str, nullable=False),  # a call status, or "skipped" (an earlier turn has no answer)
        pa.field("backend", _str, nullable=False),
    ]
)

# results/<run>/eval/{testset}/{optimizer}/{target}/conversations.parquet: the original and the
# optimized conversation side by side (each optimized message rewritten seeing the optimized
# conversation so far); the history of turn k is turns 1..k-1 of the same item
CONVERSATIONS = pa.schema(
    [
        pa.field("item_id", _str, nullable=False),
        pa.field("testset", _str, nullable=False),
        pa.field("optimizer", _str, nullable=False),
        pa.field("target", _str, nullable=False),
        pa.field("category", _str),
        pa.field("turn", _i64, nullable=False),
        pa.field("question_original", _str, nullable=False),
        pa.field("question_optimized", _str, nullable=False),  # == question_original on fallback
        pa.field("fallback_reason", _str),  # null when the optimizer's rewrite was used
        pa.field("answer_original", _str),  # from original_conversations.parquet
        pa.field("answer_optimized", _str),
        pa.field("status_original", _str, nullable=False),
        pa.field("status_optimized", _str, nullable=False),
        pa.field("backend", _str, nullable=False),
    ]
)

# results/<run>/eval/{testset}/{optimizer}/{target}/turn_judgments.parquet: JUDGMENTS per turn
TURN_JUDGMENTS = pa.schema(list(JUDGMENTS)[:5] + [pa.field("turn", _i64, nullable=False)] + list(JUDGMENTS)[5:])

# results/<run>/refine/round<r>/candidates.parquet: k sampled rewrites per pool prompt (bpo.refine)
CANDIDATES = pa.schema(
    [
        pa.field("prompt_id", _str, nullable=False),  # the pair's pair_id
        pa.field("candidate_id", _str, nullable=False),  # <prompt_id>:<sample index>
        pa.field("round", _i64, nullable=False),
        pa.field("instruction", _str, nullable=False),
        pa.field("context", _str, nullable=False),
        pa.field("completion", _str),  # the optimizer's output as generated (the DPO completion); null when dropped
        pa.field("optimized_instruction", _str),  # completion less the verbatim context; null when dropped
        pa.field("drop_reason", _str),  # null = kept (fallback detector, context altered, duplicate)
        pa.field("raw", _str),  # decoded output, kept for inspection
    ]
)

# results/<run>/refine/round<r>/candidate_answers.parquet: the target's answer to every kept candidate
# and to each pool prompt as written (candidate_id <prompt_id>:original)
CANDIDATE_ANSWERS = pa.schema(
    [
        pa.field("prompt_id", _str, nullable=False),
        pa.field("candidate_id", _str, nullable=False),
        pa.field("is_original", pa.bool_(), nullable=False),
        pa.field("target", _str, nullable=False),
        pa.field("question", _str, nullable=False),  # instruction + context as the target saw it
        pa.field("question_original", _str, nullable=False),  # what the judge is shown
        pa.field("answer", _str),
        pa.field("status", _str, nullable=False),
        pa.field("backend", _str, nullable=False),
    ]
)

# results/<run>/refine/round<r>/candidate_judgments.parquet: answer a against answer b, both orders
CANDIDATE_JUDGMENTS = pa.schema(
    [
        pa.field("prompt_id", _str, nullable=False),
        pa.field("a_id", _str, nullable=False),  # a candidate
        pa.field("b_id", _str, nullable=False),  # the original (vs_original) or another candidate
        pa.field("judge_model", _str, nullable=False),
        pa.field("verdict_a_first", _str),  # A | B | C | null (unparseable)
        pa.field("verdict_b_first", _str),
        pa.field("outcome", _str, nullable=False),  # for a: win | tie | lose | invalid
        pa.field("consistent", pa.bool_()),  # both orders agree; null when invalid
        pa.field("raw_a_first", _str),
        pa.field("raw_b_first", _str),
        pa.field("rule_a_first", _str),
        pa.field("rule_b_first", _str),
        pa.field("backend", _str, nullable=False),
    ]
)

# results/<run>/refine/round<r>/preferences.parquet: DPO pairs (prompt in the optimizer's input text
# form before its prompt format is applied; chosen/rejected as the optimizer generated them)
PREFERENCES = pa.schema(
    [
        pa.field("prompt_id", _str, nullable=False),
        pa.field("round", _i64, nullable=False),
        pa.field("prompt", _str, nullable=False),
        pa.field("chosen", _str, nullable=False),
        pa.field("rejected", _str, nullable=False),
        pa.field("chosen_id", _str, nullable=False),
        pa.field("rejected_id", _str, nullable=False),
        pa.field("chosen_score", _f64, nullable=False),
        pa.field("rejected_score", _f64, nullable=False),
    ]
)

# results/report/winrates.parquet. comparison "prompt": a target's answers to the optimizer's
# prompts (B) vs its answers to the original prompts (A); "model": model `optimizer` (B) vs model
# `target` (A) answering the same prompts (the sft_data students: student_bpo vs student_original).
WINRATES = pa.schema(
    [
        pa.field("comparison", _str, nullable=False),  # prompt | model
        pa.field("optimizer", _str, nullable=False),
        pa.field("testset", _str, nullable=False),
        pa.field("target", _str, nullable=False),
        pa.field("judge_model", _str, nullable=False),
        pa.field("category", _str),  # null = every item of the test set
        pa.field("language", _str),  # ISO 639-1 (bpo.language, "und"); null = every language
        pa.field("protocol", _str, nullable=False),  # both_orders | single_random
        pa.field("n", _i64, nullable=False),  # all pairs
        pa.field("n_invalid", _i64, nullable=False),
        pa.field("n_win", _i64, nullable=False),
        pa.field("n_tie", _i64, nullable=False),
        pa.field("n_lose", _i64, nullable=False),
        pa.field("win", _f64, nullable=False),  # NaN when no pair is valid
        pa.field("tie", _f64, nullable=False),
        pa.field("lose", _f64, nullable=False),
        pa.field("delta_wr", _f64, nullable=False),
        pa.field("delta_wr_low", _f64, nullable=False),  # bootstrap interval (eval.report.confidence)
        pa.field("delta_wr_high", _f64, nullable=False),
        pa.field("lc_delta_wr", _f64),  # length-controlled ΔWR; null below eval.report.lc_min_pairs
        pa.field("lc_delta_wr_low", _f64),
        pa.field("lc_delta_wr_high", _f64),
        pa.field("lc_length_coef", _f64),  # θ of tanh(Δlen/sd); null when no fit was needed
        pa.field("position_consistency", _f64),  # null under single_random
        pa.field("mean_len_original", _f64),  # words
        pa.field("mean_len_optimized", _f64),
        pa.field("n_missing_answer", _i64, nullable=False),  # invalid pairs by cause
        pa.field("n_judge_failed", _i64, nullable=False),
        pa.field("n_unparseable", _i64, nullable=False),
        pa.field("n_fallback", _i64, nullable=False),  # prompts the optimizer kept (OPTIMIZED.fallback_reason)
        pa.field("fallback_reasons", pa.map_(_str, _i64), nullable=False),  # reason -> count
        pa.field("backend", _str, nullable=False),  # of the verdicts; standin = offline stand-in, not a model
        pa.field("answer_backend", _str, nullable=False),  # of the target answers
    ]
)


# results/report/winrates_turns.parquet: WINRATES of multi-turn test sets, per turn (and category)
TURN_WINRATES = pa.schema(list(WINRATES)[:5] + [pa.field("turn", _i64, nullable=False)] + list(WINRATES)[5:])


class SchemaError(ValueError):
    """An artifact does not match its declared schema."""


def _to_table(data, schema: pa.Schema, what: str) -> pa.Table:
    if isinstance(data, pa.Table):
        table = data
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas DataFrame
        table = pa.Table.from_pandas(data, preserve_index=False)
    else:
        rows = list(data)
        table = pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()
    missing = [n for n in schema.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in schema.names]
    if missing or extra:
        raise SchemaError(f"{what}: columns do not match schema (missing {missing}, unexpected {extra})")
    table = table.select(schema.names)
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise SchemaError(f"{what}: {exc}") from exc


def write_table(
    data: pa.Table | Iterable[Mapping] | object,
    path: str | os.PathLike,
    schema: pa.Schema,
    metadata: Mapping[str, str] | None = None,
) -> pa.Table:
    """Validate ``data`` (Arrow table, DataFrame or list of dicts) against ``schema`` and write it
    atomically (:mod:`bpo.atomic`). ``metadata`` goes into the Parquet file's key-value metadata
    (provenance such as the generation engine), never into the rows."""
    table = _to_table(data, schema, str(path))
    if metadata:
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), **{str(k): str(v) for k, v in metadata.items()}}
        )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return table


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The key-value metadata a writer put in a Parquet artifact (see :func:`write_table`)."""
    raw = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items() if not k.startswith(b"ARROW:") and k != b"pandas"}


def read_table(path: str | os.PathLike, schema: pa.Schema) -> pa.Table:
    """Read a Parquet artifact and check it against ``schema`` (clear error naming the file)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    return _to_table(pq.read_table(path), schema, str(path))


def read_frame(path: str | os.PathLike, schema: pa.Schema):
    """:func:`read_table` as a pandas DataFrame."""
    return read_table(path, schema).to_pandas()
