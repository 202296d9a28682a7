"""The prompt optimizer's input formats: the one place that wraps a user prompt.

Training (``bpo.train.data``) and inference (``bpo.inference``) both build the model input
here, so the model sees at inference exactly the text it was trained on. The optimizer then
continues with the rewritten prompt and EOS; nothing after the input belongs to it.

Three named formats (:data:`FORMATS`):

- ``plain``: this project's own instruction template (:func:`build_prompt`). Plain text, so it
  works for the tiny from-scratch model, which has no chat template.
- ``chat-template``: the base model's own chat template (``tokenizer.apply_chat_template``), the
  same instruction as the user turn, then the generation prompt. Natural for instruct bases.
- ``bpo-release``: the input of the released BPO optimizer (THUDM/BPO, a Llama-2-chat
  fine-tune), from its model card: :data:`BPO_RELEASE_TEMPLATE`, after exactly one BOS.
- ``instruction``: no rewrite request at all, the prompt itself as the chat template's user turn
  (plain text without a template), token for token what a local hf target sends
  (bpo.generation LocalModel.encode_chat): for the sft_data students, which learn to answer.

A trained or prepared model folder records its format in ``bpo_prompt_format.json``
(:func:`write_format_record`, a file of its own so a downloaded folder can be given one without
retraining); :func:`resolve_prompt_format` picks override > folder record > configured format.

Multi-turn input (issue 20). Every format takes an optional ``history``: the earlier turns of
the conversation, oldest first, as a list of ``{"role": "user"|"assistant"|"system",
"content": str}`` (:func:`bpo.history.check_history`). With no history (None or ``[]``) the input is
byte-identical to the single-turn one. With history, the conversation so far is rendered as
text (:func:`bpo.history.render_history`: ``User: ...`` / ``Assistant: ...`` / ``System: ...`` blocks)
in a ``[Conversation so far]`` section before the message to rewrite, and the instruction says
to rewrite the last user message only: the optimizer's output is still just that message.
The history never becomes chat-template turns of the optimizer itself: the optimizer talks to
its own instruction, not to the conversation's assistant.

The history is bounded by a token budget (:func:`bpo.history.fit_history`, default
:data:`bpo.history.HISTORY_TOKENS`: long turns clipped, the oldest dropped, the number of turns
cut returned so callers record it). :func:`encode_conversation` is the one entry
used by training (:mod:`bpo.train.data`) and inference (:mod:`bpo.optimizer.rewrite`), so both
truncate and encode the same way.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from bpo.history import HISTORY_TOKENS, check_history, fit_history, render_history

log = logging.getLogger(__name__)

# Bump when the wording changes: a trained optimizer records the version it saw
# (bpo_train_config.json) and inference refuses a mismatch instead of silently
# degrading.
TEMPLATE_VERSION = 1

# Short on purpose: a fine-tuned optimizer learns the task from its data, and every template
# token is paid again in every training example and every rewrite.
_HEADER = (
    "Rewrite the prompt below so that an AI assistant answers it more helpfully, correctly and "
    "safely. Keep all of its information and any attached text unchanged; do not answer it."
)

TEMPLATE = "{header}\n\n[Original prompt]\n{prompt}\n\n[Improved prompt]\n"

# The multi-turn variants: the same cue words, the conversation before the message. The
# instruction names the two things a multi-turn rewrite must not do (answer, restate).
_HEADER_MT = (
    "Rewrite the user's last message below so that an AI assistant answers it more helpfully, "
    "correctly and safely, in the light of the conversation so far. Keep all of its information "
    "unchanged and make references to earlier turns explicit where needed; do not answer it and "
    "do not repeat the conversation. Output only the rewritten message."
)
TEMPLATE_MT = "{header}\n\n[Conversation so far]\n{history}\n\n[Original prompt]\n{prompt}\n\n[Improved prompt]\n"


def build_prompt(user_prompt: str) -> str:
    """The optimizer's input for ``user_prompt``; its output continues right after it."""
    if not isinstance(user_prompt, str):
        raise TypeError(f"build_prompt: expected a str prompt, got {type(user_prompt).__name__}")
    return TEMPLATE.format(header=_HEADER, prompt=user_prompt.strip())


PLAIN = "plain"
CHAT_TEMPLATE = "chat-template"
BPO_RELEASE = "bpo-release"
INSTRUCTION = "instruction"
FORMATS = (PLAIN, CHAT_TEMPLATE, BPO_RELEASE, INSTRUCTION)

# The released model's input, verbatim from the THUDM/BPO model card (a fact about that model,
# not this project's wording).
BPO_RELEASE_TEMPLATE = (
    "[INST] You are an expert prompt engineer. Please help me improve this prompt to get a more "
    "helpful and harmless response:\n{prompt} [/INST]"
)

BPO_RELEASE_TEMPLATE_MT = (
    "[INST] You are an expert prompt engineer. Here is a conversation so far:\n{history}\n\n"
    "Please help me improve the user's next message to get a more helpful and harmless response; "
    "rewrite that message only:\n{prompt} [/INST]"
)

RECORD_NAME = "bpo_prompt_format.json"

# The user turn of ``chat-template``: the plain template's instruction and prompt, without its
# "[Improved prompt]" cue (the chat template's generation prompt plays that part).
_CHAT_USER_TURN = "{header}\n\n[Original prompt]\n{prompt}"
_CHAT_USER_TURN_MT = "{header}\n\n[Conversation so far]\n{history}\n\n[Original prompt]\n{prompt}"


def check_format(fmt: str, where: str = "prompt format") -> str:
    if fmt not in FORMATS:
        raise ValueError(f"{where}: unknown prompt format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def _clean(user_prompt) -> str:
    if not isinstance(user_prompt, str):
        raise TypeError(f"prompt format: expected a str prompt, got {type(user_prompt).__name__}")
    return user_prompt.strip()


def format_prompt(user_prompt: str, fmt: str, tokenizer=None, history=None) -> str:
    """The optimizer's input text for ``user_prompt`` in format ``fmt`` (BOS not included:
    :func:`encode_prompt` adds it). ``chat-template`` needs the base model's ``tokenizer``.
    ``history``: the earlier turns (see the module docstring), used as given (no budget here:
    :func:`bpo.history.fit_history`); none gives exactly the single-turn input."""
    check_format(fmt)
    turns = check_history(history)
    if not turns:
        return _format_single(user_prompt, fmt, tokenizer)
    if fmt == INSTRUCTION:
        raise ValueError(f"prompt format {INSTRUCTION!r} (a student's question) takes no conversation history")
    prompt = _clean(user_prompt)
    rendered = render_history(turns)
    if fmt == PLAIN:
        return TEMPLATE_MT.format(header=_HEADER_MT, history=rendered, prompt=prompt)
    if fmt == BPO_RELEASE:
        return BPO_RELEASE_TEMPLATE_MT.format(history=rendered, prompt=prompt)
    user_turn = _CHAT_USER_TURN_MT.format(header=_HEADER_MT, history=rendered, prompt=prompt)
    return _apply_chat_template(user_turn, tokenizer)


def _apply_chat_template(user_turn: str, tokenizer) -> str:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", None)
        raise ValueError(
            f"prompt format {CHAT_TEMPLATE!r}: tokenizer {name!r} has no chat template; "
            f"use {PLAIN!r} or {BPO_RELEASE!r}"
        )
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": user_turn}], tokenize=False, add_generation_prompt=True
    )


def _format_single(user_prompt: str, fmt: str, tokenizer) -> str:
    if fmt == PLAIN:
        return build_prompt(user_prompt)
    prompt = _clean(user_prompt)
    if fmt == BPO_RELEASE:
        return BPO_RELEASE_TEMPLATE.format(prompt=prompt)
    if fmt == INSTRUCTION:
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            return prompt
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return _apply_chat_template(_CHAT_USER_TURN.format(header=_HEADER, prompt=prompt), tokenizer)


def _drop_leading_bos(text: str, tokenizer) -> str:
    bos = tokenizer.bos_token
    while bos and text.startswith(bos):
        text = text[len(bos) :]
    return text


def encode_prompt(user_prompt: str, fmt: str, tokenizer, history=None) -> list[int]:
    """Token ids of the optimizer input; the same ids in training and inference.

    At most one BOS, never two: a BOS written by a chat template into the text and the one the
    tokenizer adds collapse into one. ``bpo-release`` always starts with the tokenizer's BOS
    (the released model's Llama-2 tokenizer adds it); ``plain`` and ``chat-template`` keep
    whatever the tokenizer adds, as ``plain`` always did. Never ends with EOS: the input must not
    look finished.
    """
    text = format_prompt(user_prompt, fmt, tokenizer, history)
    if fmt == INSTRUCTION:  # exactly LocalModel.encode_chat's ids: the students answer through it
        ids = tokenizer(text, add_special_tokens=not getattr(tokenizer, "chat_template", None)).input_ids
        return ids[:-1] if ids and ids[-1] == tokenizer.eos_token_id else ids
    bos_id = tokenizer.bos_token_id
    text_had_bos = bool(tokenizer.bos_token) and text.startswith(tokenizer.bos_token)
    ids = tokenizer(_drop_leading_bos(text, tokenizer)).input_ids
    if ids and ids[-1] == tokenizer.eos_token_id:
        ids = ids[:-1]
    starts_with_bos = bos_id is not None and ids[:1] == [bos_id]
    if bos_id is not None and not starts_with_bos and (text_had_bos or fmt == BPO_RELEASE):
        ids = [bos_id] + ids
    return ids


def encode_conversation(
    user_prompt: str, fmt: str, tokenizer, history=None, max_history_tokens: int = HISTORY_TOKENS
) -> tuple[list[int], int]:
    """``(input_ids, n_turns_cut)``: the history fitted to its budget (:func:`bpo.history.fit_history`),
    then :func:`encode_prompt`. The one path of training and inference for multi-turn input."""
    kept, dropped = fit_history(history, tokenizer, max_history_tokens)
    return encode_prompt(user_prompt, fmt, tokenizer, kept), dropped


def encode_target(optimized: str, tokenizer) -> list[int]:
    """Token ids of a training target: the optimized prompt, then EOS exactly once."""
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', None)!r} has no EOS token; the optimizer must learn to stop"
        )
    text = optimized.strip()
    eos = tokenizer.eos_token
    while eos and text.endswith(eos):  # an EOS typed into the data is not a second EOS
        text = text[: -len(eos)].rstrip()
    ids = tokenizer(text, add_special_tokens=False).input_ids
    while ids and ids[-1] == eos_id:
        ids = ids[:-1]
    return ids + [eos_id]


def encode_training_pair(
    user_prompt: str, optimized: str, fmt: str, tokenizer, history=None, max_history_tokens: int = HISTORY_TOKENS
) -> tuple[list[int], list[int]]:
    """``(input_ids, target_ids)`` of one training example; the loss goes on the target only.
    ``history`` is fitted to ``max_history_tokens`` exactly as at inference."""
    ids, _ = encode_conversation(user_prompt, fmt, tokenizer, history, max_history_tokens)
    return ids, encode_target(optimized, tokenizer)


def write_format_record(model_dir: str | os.PathLike, fmt: str) -> Path:
    """Record in ``model_dir`` the format its optimizer was trained with (or is to be used with)."""
    from bpo.atomic import write_json

    path = Path(model_dir) / RECORD_NAME
    record = {"prompt_format": check_format(fmt)}
    if fmt == PLAIN:
        record["template_version"] = TEMPLATE_VERSION
    write_json(record, path, sort_keys=True)
    return path


def read_format_record(model_dir: str | os.PathLike) -> str | None:
    """The format recorded in ``model_dir``; None for a hub id or a folder without a record."""
    path = Path(model_dir) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        fmt = record["prompt_format"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f'{path}: not a prompt format record ({exc}); expected {{"prompt_format": ...}}') from None
    return check_format(fmt, where=str(path))


def resolve_prompt_format(
    model: str | os.PathLike, override: str | None = None, configured: str | None = None
) -> tuple[str, str]:
    """``(format, source)`` for optimizer ``model`` (a folder or a hub id).

    Order: ``override`` (``bpo optimize --format``) > the folder's record > ``configured`` (the
    config) > ``plain``. ``source`` says which one won; it is logged, with a warning when an
    override contradicts the record or nothing specified the format.
    """
    recorded = read_format_record(model) if Path(model).is_dir() else None
    if override is not None:
        fmt, source = check_format(override, "--format"), "override"
        if recorded is not None and recorded != override:
            log.warning("%s records prompt format %r; using %r as overridden", model, recorded, override)
    elif recorded is not None:
        fmt, source = recorded, "record"
    elif configured is not None:
        fmt, source = check_format(configured, "configured prompt format"), "config"
    else:
        fmt, source = PLAIN, "default"
        log.warning("%s records no prompt format and none is configured: using %r", model, PLAIN)
    log.info("optimizer %s: prompt format %r (from %s)", model, fmt, source)
    return fmt, source
