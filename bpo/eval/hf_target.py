"""A local Hugging Face causal LM as a target, generating through :mod:`bpo.generation`.

Greedy at temperature 0 (the paper's target decoding), seeded sampling otherwise. A model with
a chat template gets the question as a user turn; a base model gets the plain text.
:func:`answer_testset_hf` is rule answer_hf's entry point: ``answers.parquet`` with the engine
that generated in its metadata.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Sequence

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
    log.info("local target %s (%s): %d questions answered, %d distinct", settings.model, out.engine, len(questions),
             len(distinct))
    return [answers[q] for q in questions], out.engine


def answer_testset_hf(optimized_path: str | Path, out_path: str | Path, settings: HFTargetSettings) -> dict:
    """The target answers the original and the optimized question of every item of
    ``optimized.parquet``; writes ``answers.parquet`` (rows as for endpoint targets, backend
    ``hf``; the generation engine in the metadata)."""
    from bpo.eval.answer import answer_rows, questions, read_items
    from bpo.schemas import ANSWERS, write_table

    items = read_items(optimized_path)
    originals, optimized = questions(items)
    answers, engine = hf_answers(originals + optimized, settings)
    n = len(items)
    out = [(text, status, "hf") for text, status in answers]
    write_table(answer_rows(items, settings.name, out[:n], out[n:]), out_path, ANSWERS, metadata=engine.metadata())
    statuses = Counter(status for _, status in answers)
    log.info("target %s answered %d items (%d questions): statuses %s", settings.name, n, 2 * n, dict(statuses))
    return {"items": n, "statuses": dict(statuses), "engine": str(engine)}
