"""A target LLM answers each test prompt twice: as the user wrote it and as optimized.

This module answers through a named LLM endpoint (``kind: endpoint``) via the LLM layer: its
backend decides whether that is a real OpenAI-compatible API, a replay of recorded calls, or the
offline stand-in; every call is cached, so a rerun never pays twice. A local Hugging Face target
(``kind: hf``) generates elsewhere and shares the row building here (:func:`answer_rows`).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

from bpo.eval.calls import chat_request, run_unique
from bpo.eval.testsets import render_question
from bpo.schemas import ANSWERS, OPTIMIZED, read_table, write_table
from bpo.settings import LLMRuntime
from bpo.settings.evaluate import EndpointTargetSettings

log = logging.getLogger(__name__)

# One answer: (text or None, status, backend) -- status "ok", "truncated", "refused" or "error".
Answer = tuple[str | None, str, str]


def answer_questions(questions: Sequence[str], target: EndpointTargetSettings, runtime: LLMRuntime, *,
                     stage: str) -> list[Answer]:
    """One :data:`Answer` per question from an endpoint target; identical questions are one call."""
    from bpo.llm import make_client

    client = make_client(target.endpoint, runtime, stage)
    requests = [chat_request(target.model, q, temperature=target.temperature, top_p=target.top_p,
                             max_tokens=target.max_tokens, seed=target.seed, system=target.system_prompt)
                for q in questions]
    results = run_unique(client, requests, what=f"{stage} {target.name} ({target.model})")
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


def questions(items: Sequence[Mapping]) -> tuple[list[str], list[str]]:
    """The original and the optimized question of every item, context attached verbatim."""
    return ([render_question(r["instruction"], r["context"]) for r in items],
            [render_question(r["optimized_instruction"], r["context"]) for r in items])


def answer_rows(items: Sequence[Mapping], target_name: str, original: Sequence[Answer],
                optimized: Sequence[Answer]) -> list[dict]:
    """``answers.parquet`` rows: item ``k`` with its answers ``original[k]`` and ``optimized[k]``."""
    if not len(items) == len(original) == len(optimized):
        raise ValueError(f"target {target_name}: {len(items)} items but {len(original)} original and "
                         f"{len(optimized)} optimized answers")
    q_orig, q_opt = questions(items)
    rows = []
    for k, rec in enumerate(items):
        (a_orig, s_orig, b_orig), (a_opt, s_opt, b_opt) = original[k], optimized[k]
        rows.append({
            "item_id": rec["item_id"], "testset": rec["testset"], "target": target_name,
            "question_original": q_orig[k], "question_optimized": q_opt[k],
            "answer_original": a_orig, "answer_optimized": a_opt,
            "status_original": s_orig, "status_optimized": s_opt,
            "backend": "+".join(sorted({b_orig, b_opt})),
        })
    return rows


def answer_testset(optimized_path: str | Path, out_path: str | Path, target: EndpointTargetSettings,
                   runtime: LLMRuntime) -> dict:
    """Answer the original and the optimized question of every item; write ``answers.parquet``."""
    items = read_items(optimized_path)
    originals, optimized = questions(items)
    results = answer_questions(originals + optimized, target, runtime, stage="answer")
    n = len(items)
    write_table(answer_rows(items, target.name, results[:n], results[n:]), out_path, ANSWERS)
    statuses = Counter(s for _, s, _ in results)
    log.info("target %s answered %d items (%d questions): statuses %s", target.name, n, 2 * n, dict(statuses))
    return {"items": n, "statuses": dict(statuses)}
