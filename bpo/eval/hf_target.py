"""A local Hugging Face causal LM as a target, generating through :mod:`bpo.generation`.

Greedy at temperature 0 (the paper's target decoding), seeded sampling otherwise. A model with
a chat template gets the question as a user turn; a base model gets the plain text.
:func:`hf_answerer` is how such a target answers in bpo.eval.answer's one answering flow (rules
answer_original_hf and answer_hf); the engine goes into the Parquet metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bpo.generation import EngineRecord, generate_chat, load_model
from bpo.settings.hf_target import HFTargetSettings

log = logging.getLogger(__name__)


def hf_answers(questions: Sequence[str], settings: HFTargetSettings) -> tuple[list[tuple[str, str]], EngineRecord]:
    """``(answer, status)`` per question and the engine that ran; status "ok", or "truncated"
    when generation hit the token limit before the end-of-sequence token. Identical questions
    are generated once."""
    model = load_model(settings.model, dtype=settings.dtype)
    system = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else []
    distinct = list(dict.fromkeys(questions))
    out = generate_chat(model, [system + [{"role": "user", "content": q}] for q in distinct], settings.generation)
    answers = {q: (g.text.strip(), "truncated" if g.hit_limit else "ok") for q, g in zip(distinct, out.outputs)}
    log.info(
        "local target %s (%s): %d questions answered, %d distinct",
        settings.model,
        out.engine,
        len(questions),
        len(distinct),
    )
    return [answers[q] for q in questions], out.engine


def hf_answerer(settings: HFTargetSettings):
    """A local HF target as a bpo.eval.answer.Answerer (the model loads on the first question)."""

    def answer(questions: Sequence[str]):
        generated, engine = hf_answers(questions, settings)
        return [(text, status, "hf") for text, status in generated], engine

    return answer
