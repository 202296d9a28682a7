"""A target LLM answers each test prompt as the user wrote it and as each optimizer rewrote it.

The original questions are answered ONCE per (test set, target) (:func:`answer_original`
-> ``original_answers.parquet``); each optimizer's branch answers only its rewritten questions
and takes the original answers from there (:func:`answer_optimized`). A rewritten question equal
to its original (a fallback, or the identity optimizer) reuses the original answer: the same
question is the same call, and identity then compares an answer with itself.

Both take HOW a target answers as an argument (an :data:`Answerer`): :func:`endpoint_answerer`
asks a named LLM endpoint (``kind: endpoint``) through the LLM layer, whose backend decides
whether that is a real OpenAI-compatible API, a replay of recorded calls or the offline
stand-in (every call cached, so a rerun never pays twice); bpo.eval.hf_target.hf_answerer
generates with a local Hugging Face model (``kind: hf``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bpo.eval.calls import run_unique
from bpo.eval.testsets import load_configured, render_question
from bpo.schemas import ANSWERS, OPTIMIZED, ORIGINAL_ANSWERS, read_table, write_table
from bpo.settings import LLMRuntime
from bpo.settings.evaluate import EndpointTargetSettings
from bpo.settings.testsets import TestsetSettings

log = logging.getLogger(__name__)

# One answer: (text or None, status, backend) -- status "ok", "truncated", "refused" or "error".
Answer = tuple[str | None, str, str]

# How a target answers: one Answer per question (identical questions answered once) and the
# engine that generated them (a local model's; its metadata goes into the Parquet file), or None.
Answerer = Callable[[Sequence[str]], tuple[list[Answer], Any]]


def answer_questions(
    questions: Sequence[str], target: EndpointTargetSettings, runtime: LLMRuntime, *, stage: str
) -> list[Answer]:
    """One :data:`Answer` per question from an endpoint target; identical questions are one call."""
    from bpo.llm import call_request, make_client

    client = make_client(target.call.endpoint, runtime, stage)
    requests = [call_request(target.call, q) for q in questions]
    results = run_unique(client, requests, what=f"{stage} {target.name} ({target.call.model})")
    for q, r in zip(questions, results):
        if r.status == "error":
            log.warning("%s: call failed for %r: %s", target.name, q[:80], r.error)
    return [(r.text, r.status, r.backend) for r in results]


def read_items(optimized_path: str | Path) -> list[dict]:
    """The rows of ``optimized.parquet``; an empty file is an error (nothing to answer)."""
    items = read_table(optimized_path, OPTIMIZED).to_pylist()
    if not items:
        raise ValueError(f"{optimized_path}: no optimized prompts to answer")
    return items


def original_rows(testset: str, target_name: str, items: Sequence, answers: Sequence[Answer]) -> list[dict]:
    """``original_answers.parquet`` rows: test item ``k`` (a TestItem) with ``answers[k]``."""
    if len(items) != len(answers):
        raise ValueError(f"target {target_name}: {len(items)} items but {len(answers)} answers")
    return [
        {
            "item_id": it.item_id,
            "testset": testset,
            "target": target_name,
            "category": it.category,
            "question": it.question,
            "answer": text,
            "status": status,
            "backend": backend,
        }
        for it, (text, status, backend) in zip(items, answers)
    ]


def load_original_items(settings) -> list:
    """The test items whose original questions a target answers; none is an error."""
    ts = load_configured(settings)
    if not ts.items:
        raise ValueError(f"test set {settings.name} ({settings.path}): no items to answer")
    return ts.items


def endpoint_answerer(target: EndpointTargetSettings, runtime: LLMRuntime, stage: str = "answer") -> Answerer:
    """An endpoint target as an :data:`Answerer` (no engine: the endpoint's backend is in each row)."""
    return lambda qs: (answer_questions(qs, target, runtime, stage=stage), None)


def _statuses(answers: Sequence[Answer], engine: Any) -> dict:
    return {"statuses": dict(Counter(s for _, s, _ in answers)), "engine": str(engine) if engine else None}


def answer_original(out_path: str | Path, testset: TestsetSettings, target_name: str, answer: Answerer) -> dict:
    """The target answers the original question of every test item; writes ``original_answers.parquet``."""
    items = load_original_items(testset)
    results, engine = answer([it.question for it in items])
    write_table(
        original_rows(testset.name, target_name, items, results),
        out_path,
        ORIGINAL_ANSWERS,
        metadata=engine.metadata() if engine else None,
    )
    stats = {"items": len(items), **_statuses(results, engine)}
    log.info("target %s answered the %d original questions of %s: %s", target_name, len(items), testset.name, stats)
    return stats


def read_originals(original_path: str | Path, items: Sequence[Mapping], target_name: str) -> list[Answer]:
    """The original answer of every optimized item, from ``original_answers.parquet``; an item
    missing there, or asked differently, is an error naming it (the two files must come from
    the same test set settings)."""
    rows = {r["item_id"]: r for r in read_table(original_path, ORIGINAL_ANSWERS).to_pylist()}
    out = []
    for rec in items:
        orig = rows.get(rec["item_id"])
        if orig is None:
            raise ValueError(f"{original_path}: no original answer of item {rec['item_id']} ({rec['testset']})")
        if orig["target"] != target_name:
            raise ValueError(f"{original_path}: answers of target {orig['target']}, expected {target_name}")
        if orig["question"] != render_question(rec["instruction"], rec["context"]):
            raise ValueError(
                f"{original_path}: item {rec['item_id']} was asked differently than in the optimized "
                "prompts (were both made from the same test set settings?)"
            )
        out.append((orig["answer"], orig["status"], orig["backend"]))
    return out


def to_answer(items: Sequence[Mapping]) -> list[int]:
    """Indices of the items whose optimized question differs from the original (the others
    reuse the original answer)."""
    q_orig, q_opt = questions(items)
    return [k for k in range(len(items)) if q_opt[k] != q_orig[k]]


def merge_answers(
    n: int, original: Sequence[Answer], pending: Sequence[int], answered: Sequence[Answer]
) -> list[Answer]:
    """Optimized answers of ``n`` items: ``answered`` at ``pending`` positions, else the original answer."""
    out = list(original[:n])
    for k, ans in zip(pending, answered, strict=True):
        out[k] = ans
    return out


def questions(items: Sequence[Mapping]) -> tuple[list[str], list[str]]:
    """The original and the optimized question of every item, context attached verbatim."""
    return (
        [render_question(r["instruction"], r["context"]) for r in items],
        [render_question(r["optimized_instruction"], r["context"]) for r in items],
    )


def answer_rows(
    items: Sequence[Mapping], target_name: str, original: Sequence[Answer], optimized: Sequence[Answer]
) -> list[dict]:
    """``answers.parquet`` rows: item ``k`` with its answers ``original[k]`` and ``optimized[k]``."""
    if not len(items) == len(original) == len(optimized):
        raise ValueError(
            f"target {target_name}: {len(items)} items but {len(original)} original and "
            f"{len(optimized)} optimized answers"
        )
    q_orig, q_opt = questions(items)
    rows = []
    for k, rec in enumerate(items):
        (a_orig, s_orig, b_orig), (a_opt, s_opt, b_opt) = original[k], optimized[k]
        rows.append(
            {
                "item_id": rec["item_id"],
                "testset": rec["testset"],
                "optimizer": rec["optimizer"],
                "target": target_name,
                "category": rec["category"],
                "question_original": q_orig[k],
                "question_optimized": q_opt[k],
                "answer_original": a_orig,
                "answer_optimized": a_opt,
                "status_original": s_orig,
                "status_optimized": s_opt,
                "backend": "+".join(sorted({b_orig, b_opt})),
            }
        )
    return rows


def answer_optimized(
    optimized_path: str | Path, original_path: str | Path, out_path: str | Path, target_name: str, answer: Answerer
) -> dict:
    """The target answers one optimizer's questions of ``optimized.parquet``; the original answers
    come from ``original_path``, and an unchanged question reuses its original answer (nothing is
    asked, no model loaded, when every question is unchanged). Writes ``answers.parquet``."""
    items = read_items(optimized_path)
    original = read_originals(original_path, items, target_name)
    pending = to_answer(items)
    _, q_opt = questions(items)
    answered, engine = answer([q_opt[k] for k in pending]) if pending else ([], None)
    optimized = merge_answers(len(items), original, pending, answered)
    write_table(
        answer_rows(items, target_name, original, optimized),
        out_path,
        ANSWERS,
        metadata=engine.metadata() if engine else None,
    )
    stats = {"items": len(items), "answered": len(pending), **_statuses(optimized, engine)}
    log.info(
        "target %s answered %d of %d optimized questions of %s (the rest equal the original): %s",
        target_name,
        len(pending),
        len(items),
        items[0]["optimizer"],
        stats,
    )
    return stats
