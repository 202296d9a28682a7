"""SFT examples -> token ids with the loss on the optimized prompt and EOS only.

An example is the optimizer input in the run's prompt format (``train.prompt_format``,
:func:`bpo.prompt_format.encode_prompt`; with the SFT row's ``history`` for a multi-turn pair,
fitted to the same token budget as at inference) followed by ``optimized + EOS``. The two halves are
tokenized separately and concatenated (:func:`bpo.prompt_format.encode_training_pair`), so the
boundary between "input" (label -100) and "target" is exact at the token level and identical to
what inference feeds the model (the same function encodes it there, then the model continues).

Batching: padding-free packing (``DataCollatorWithFlattening``: one row of
concatenated examples with ``position_ids`` restarting at 0 per example, which
the attention mask builder turns into a block-diagonal causal mask, so no
example attends to another) or classic right padding.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bpo.history import HISTORY_TOKENS
from bpo.prompt_format import encode_training_pair
from bpo.schemas import SFT, read_table

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass
class EncodeReport:
    """What happened to each SFT row: kept, or dropped with a reason."""

    n_rows: int = 0
    n_kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    n_target_tokens: int = 0
    n_tokens: int = 0

    def as_dict(self) -> dict:
        return {
            "rows": self.n_rows,
            "kept": self.n_kept,
            "dropped": dict(self.dropped),
            "tokens": self.n_tokens,
            "target_tokens": self.n_target_tokens,
        }


def load_sft_pairs(path: str | Path) -> list[tuple[str, str, str, list[dict]]]:
    """``(pair_id, prompt, optimized_prompt, history)`` rows of an SFT Parquet file (schema-checked)."""
    table = read_table(path, SFT)
    return list(
        zip(
            table["pair_id"].to_pylist(),
            table["prompt"].to_pylist(),
            table["optimized_prompt"].to_pylist(),
            table["history"].to_pylist(),
        )
    )


def prepare_tokenizer(tokenizer):
    """Make a base model's tokenizer usable for SFT: it needs EOS (the end of every target)
    and a pad token (padding collator, batched inference). Llama-2 ships without pad; its
    ``unk`` is used then (never a label), falling back to EOS (harmless: padded labels are
    -100 and padded inputs are masked)."""
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no EOS token; the optimizer must learn to stop")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def encode_example(
    tokenizer,
    prompt: str,
    optimized: str,
    max_length: int,
    prompt_format: str,
    history=None,
    max_history_tokens: int = HISTORY_TOKENS,
) -> dict | str:
    """``{"input_ids", "labels"}`` for one pair, or the reason it is dropped.

    Examples longer than ``max_length`` are dropped rather than truncated: a cut
    target would teach the optimizer to stop mid-sentence without EOS. ``history`` (the earlier
    turns) is fitted to ``max_history_tokens`` exactly as inference fits it.
    """
    if not prompt or not prompt.strip():
        return "empty_prompt"
    if not optimized or not optimized.strip():
        return "empty_optimized_prompt"
    prompt_ids, target_ids = encode_training_pair(
        prompt, optimized, prompt_format, tokenizer, history, max_history_tokens
    )
    if len(prompt_ids) + len(target_ids) > max_length:
        return "too_long"
    return {
        "input_ids": prompt_ids + target_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + target_ids,
    }


def encode_pairs(
    tokenizer, pairs, max_length: int, *, prompt_format: str, what: str = "sft", history_tokens: int | None = None
) -> tuple[list[dict], EncodeReport]:
    """Encode ``(pair_id, prompt, optimized[, history])`` rows in ``prompt_format`` (one of
    :data:`bpo.prompt_format.FORMATS`), histories fitted to ``history_tokens`` (None:
    :data:`bpo.history.HISTORY_TOKENS`); drops are counted by reason and logged."""
    budget = HISTORY_TOKENS if history_tokens is None else history_tokens
    report = EncodeReport()
    examples = []
    for pair_id, prompt, optimized, *rest in pairs:
        report.n_rows += 1
        enc = encode_example(tokenizer, prompt, optimized, max_length, prompt_format, rest[0] if rest else None, budget)
        if isinstance(enc, str):
            report.dropped[enc] += 1
            log.debug("%s: dropped pair %s (%s)", what, pair_id, enc)
            continue
        report.n_kept += 1
        report.n_tokens += len(enc["input_ids"])
        report.n_target_tokens += sum(1 for t in enc["labels"] if t != IGNORE_INDEX)
        examples.append(enc)
    if report.dropped:
        log.warning(
            "%s: dropped %d of %d pairs: %s", what, sum(report.dropped.values()), report.n_rows, dict(report.dropped)
        )
    log.info(
        "%s: %d examples, %d tokens (%d in the loss)", what, report.n_kept, report.n_tokens, report.n_target_tokens
    )
    return examples, report


def to_dataset(examples: list[dict]):
    """A ``datasets.Dataset`` of input_ids/labels for the Trainer."""
    from datasets import Dataset

    return Dataset.from_dict(
        {"input_ids": [e["input_ids"] for e in examples], "labels": [e["labels"] for e in examples]}
    )


def make_collator(tokenizer, packing: bool, attn_implementation: str = "sdpa_varlen"):
    """Padding-free flattening collator (``packing``) or a right-padding collator."""
    if packing:
        from transformers import DataCollatorWithFlattening

        from bpo.train.attention import uses_seq_boundaries

        # FlashAttention and sdpa_varlen take the sequence boundaries (cu_seq_lens) and attend
        # within each sequence; sdpa/eager derive a block-diagonal mask from the restarting
        # position_ids (correct, but they compute every cross-sequence score).
        return DataCollatorWithFlattening(
            return_position_ids=True,
            separator_id=IGNORE_INDEX,
            return_flash_attn_kwargs=uses_seq_boundaries(attn_implementation),
        )
    from transformers import DataCollatorForSeq2Seq

    if tokenizer.padding_side != "right":
        raise ValueError("training pads on the right; call prepare_tokenizer() first")
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")
