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

from bpo.generation import EngineRecord, GenerationSettings, generate_chat, load_model
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


def generate_answers(
    model_name_or_path: str,
    questions: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    batch_size: int,
    seed: int,
    system_prompt: str | None = None,
    dtype: str = "auto",
    engine: str = "auto",
) -> list[tuple[str, str]]:
    """:func:`hf_answers` from loose values (for :func:`bpo.eval.answer.answer_questions`)."""
    generation = GenerationSettings(engine=engine, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                    batch_size=batch_size, seed=seed, greedy=temperature == 0)
    settings = HFTargetSettings(name=str(model_name_or_path), model=str(model_name_or_path), dtype=dtype,
                                system_prompt=system_prompt, generation=generation)
    return hf_answers(questions, settings)[0]


def answer_testset_hf(optimized_path: str | Path, out_path: str | Path, settings: HFTargetSettings) -> dict:
    """The target answers the original and the optimized question of every item of
    ``optimized.parquet``; writes ``answers.parquet`` (rows as for endpoint targets, backend
    ``hf``; the generation engine in the metadata)."""
    from bpo.eval.testsets import render_question
    from bpo.schemas import ANSWERS, OPTIMIZED, read_table, write_table

    items = read_table(optimized_path, OPTIMIZED).to_pylist()
    if not items:
        raise ValueError(f"{optimized_path}: no optimized prompts to answer")
    originals = [render_question(r["instruction"], r["context"]) for r in items]
    optimized = [render_question(r["optimized_instruction"], r["context"]) for r in items]
    answers, engine = hf_answers(originals + optimized, settings)
    n = len(items)
    rows = [
        {
            "item_id": rec["item_id"], "testset": rec["testset"], "target": settings.name,
            "question_original": originals[k], "question_optimized": optimized[k],
            "answer_original": answers[k][0], "answer_optimized": answers[n + k][0],
            "status_original": answers[k][1], "status_optimized": answers[n + k][1],
            "backend": "hf",
        }
        for k, rec in enumerate(items)
    ]
    write_table(rows, out_path, ANSWERS, metadata=engine.metadata())
    statuses = Counter(status for _, status in answers)
    log.info("target %s answered %d items (%d questions): statuses %s", settings.name, n, 2 * n, dict(statuses))
    return {"items": n, "statuses": dict(statuses), "engine": str(engine)}
