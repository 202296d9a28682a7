"""Rewrite prompts with a trained optimizer (an optimizer folder or hub id).

The optimizer sees its prompt format (:mod:`bpo.prompt_format`: the one its folder records, else
the configured one, unless overridden), encoded by the same function as in training
(:func:`bpo.prompt_format.encode_prompt`); :mod:`bpo.generation` decodes. Decoding follows the
paper (top-p 0.9, temperature 0.6) unless the settings say otherwise. Unusable outputs fall
back to the original prompt with a reason (:mod:`bpo.optimizer.fallback`).

Multi-turn: ``optimize_prompts(..., histories=[...])`` takes one history per prompt (the earlier
turns, a list of ``{role, content}``; None or ``[]`` = single-turn, byte-identical input). Each
history is fitted to ``max_history_tokens`` (:func:`bpo.history.fit_history`: oldest turns
dropped, the boundary turn clipped, counted in :attr:`OptimizeResult.history_cut`) and the rewrite is of the prompt (the
last user message) only; the fallback detector also checks it against the history.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bpo.generation import EngineRecord, GenerationSettings, LocalModel, generate, load_model
from bpo.optimizer.fallback import EMPTY_INPUT, degenerate_reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimizeResult:
    text: str  # the optimized prompt, or the original one when fallback_reason is set
    fallback_reason: str | None = None
    raw: str | None = None  # the optimizer's decoded output, kept for inspection
    history_cut: int = 0  # earlier turns the history budget left out of the optimizer's input or clipped


@dataclass(frozen=True)
class Rewrites:
    results: list[OptimizeResult]  # one per prompt, in order
    engine: EngineRecord | None  # None when no prompt needed the model (all empty)


def check_template_version(model_dir: str) -> None:
    """Refuse an optimizer trained on another version of the input template: it would see
    text it was never trained on and degrade silently."""
    from bpo.prompt_format import TEMPLATE_VERSION
    from bpo.train.artifacts import TRAIN_CONFIG_NAME

    cfg_path = Path(model_dir) / TRAIN_CONFIG_NAME
    if cfg_path.exists():
        version = json.loads(cfg_path.read_text()).get("bpo_template_version")
        if version != TEMPLATE_VERSION:
            raise ValueError(
                f"{model_dir}: trained with prompt template v{version}, this code builds v{TEMPLATE_VERSION}; retrain"
            )
    elif Path(model_dir).exists():
        log.warning(
            "%s has no %s: assuming it was trained on bpo.prompt_format's template", model_dir, TRAIN_CONFIG_NAME
        )


def load_optimizer(model_dir: str, device: str | None = None) -> LocalModel:
    """The optimizer in ``model_dir`` (checked against this code's template); cached per process."""
    check_template_version(model_dir)
    try:
        return load_model(model_dir, device=device)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"cannot load the optimizer from {model_dir!r}: {exc}") from exc


def optimize_prompts(
    model_dir: str,
    prompts: Sequence[str],
    settings: GenerationSettings,
    *,
    prompt_format: str | None = None,
    format_override: str | None = None,
    histories: Sequence | None = None,
    max_history_tokens: int | None = None,
) -> Rewrites:
    """Rewrite ``prompts`` with the optimizer in ``model_dir``; one result per prompt, in order.

    The input format is ``format_override`` (``bpo optimize --format``), else the folder's record,
    else ``prompt_format`` (the configured one), else ``plain``; the choice is logged. Greedy
    decoding is deterministic (batched == one-at-a-time output); sampling is seeded.
    ``histories``: None, or one history per prompt (None/``[]`` for a single-turn prompt);
    ``max_history_tokens``: the history budget (None: :data:`bpo.history.HISTORY_TOKENS`)."""
    from bpo.history import HISTORY_TOKENS, check_history
    from bpo.prompt_format import encode_conversation, resolve_prompt_format

    prompts = list(prompts)
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompt {i}: expected a str, got {type(p).__name__}")
    if histories is None:
        turns: list[list[dict]] = [[] for _ in prompts]
    else:
        histories = list(histories)
        if len(histories) != len(prompts):
            raise ValueError(f"optimize_prompts: {len(histories)} histories for {len(prompts)} prompts")
        turns = [check_history(h, where=f"prompt {i}: history") for i, h in enumerate(histories)]
    budget = HISTORY_TOKENS if max_history_tokens is None else max_history_tokens
    todo = [i for i, p in enumerate(prompts) if p.strip()]
    results: list[OptimizeResult | None] = [None if p.strip() else OptimizeResult(p, EMPTY_INPUT) for p in prompts]
    engine = None
    if todo:
        fmt, _ = resolve_prompt_format(model_dir, override=format_override, configured=prompt_format)
        model = load_optimizer(model_dir)
        encoded = [encode_conversation(prompts[i], fmt, model.tokenizer, turns[i], budget) for i in todo]
        out = generate(model, [ids for ids, _ in encoded], settings)
        engine = out.engine
        for i, (_, dropped), gen in zip(todo, encoded, out.outputs):
            reason = degenerate_reason(gen.text, gen.hit_limit, prompts[i], history=turns[i])
            results[i] = OptimizeResult(prompts[i] if reason else gen.text.strip(), reason, gen.text, dropped)
    reasons = Counter(r.fallback_reason for r in results if r.fallback_reason)
    if reasons:
        log.warning(
            "optimizer output unusable for %d of %d prompts (original kept): %s",
            sum(reasons.values()),
            len(prompts),
            dict(reasons),
        )
    return Rewrites(results, engine)  # type: ignore[arg-type]
