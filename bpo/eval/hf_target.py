"""A local Hugging Face causal LM as a target, generating through :mod:`bpo.generation`.

Greedy at temperature 0 (the paper's target decoding), seeded sampling otherwise. A model with
a chat template gets the question as a user turn; a base model gets the plain text.
:func:`answer_original_testset_hf` (rule answer_original_hf) and :func:`answer_testset_hf` (rule
answer_hf) write ``original_answers.parquet`` and ``answers.parquet`` with the engine in the metadata.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Sequence

from bpo.generation import EngineRecord, generate_chat, load_model
from bpo.settings.hf_target import HFOriginalAnswerSettings, HFTargetSettings

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
    log.info("local target %s (%s): %d questions answered, %d distinct", settings.model, out.engine, len(questions),
             len(distinct))
    return [answers[q] for q in questions], out.engine


def answer_original_testset_hf(out_path: str | Path, settings: HFOriginalAnswerSettings) -> dict:
    """The local target answers the original question of every test item; writes
    ``original_answers.parquet`` (backend ``hf``; the generation engine in the metadata)."""
    from bpo.eval.answer import load_original_items, original_rows
    from bpo.schemas import ORIGINAL_ANSWERS, write_table

    items = load_original_items(settings.testset)
    answers, engine = hf_answers([it.question for it in items], settings.target)
    rows = original_rows(settings.testset.name, settings.target.name, items, [(t, s, "hf") for t, s in answers])
    write_table(rows, out_path, ORIGINAL_ANSWERS, metadata=engine.metadata())
    statuses = Counter(status for _, status in answers)
    log.info("target %s answered the %d original questions of %s: statuses %s", settings.target.name, len(items),
             settings.testset.name, dict(statuses))
    return {"items": len(items), "statuses": dict(statuses), "engine": str(engine)}


def answer_testset_hf(optimized_path: str | Path, original_path: str | Path, out_path: str | Path,
                      settings: HFTargetSettings) -> dict:
    """The target answers one optimizer's questions of ``optimized.parquet`` (the original
    answers come from ``original_path``; an unchanged question reuses its original answer, and
    no model is loaded when every question is unchanged); writes ``answers.parquet``."""
    from bpo.eval.answer import answer_rows, merge_answers, questions, read_items, read_originals, to_answer
    from bpo.schemas import ANSWERS, write_table

    items = read_items(optimized_path)
    original = read_originals(original_path, items, settings.name)
    pending = to_answer(items)
    answered, engine = [], None
    if pending:
        _, q_opt = questions(items)
        generated, engine = hf_answers([q_opt[k] for k in pending], settings)
        answered = [(text, status, "hf") for text, status in generated]
    optimized = merge_answers(len(items), original, pending, answered)
    write_table(answer_rows(items, settings.name, original, optimized), out_path, ANSWERS,
                metadata=engine.metadata() if engine else None)
    statuses = Counter(status for _, status, _ in optimized)
    log.info("target %s answered %d of %d optimized questions (the rest equal the original): statuses %s",
             settings.name, len(pending), len(items), dict(statuses))
    return {"items": len(items), "answered": len(pending), "statuses": dict(statuses),
            "engine": str(engine) if engine else None}
