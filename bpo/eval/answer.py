"""A target LLM answers each test prompt twice: as the user wrote it and as optimized.

Targets (``kind``):

- ``endpoint``: a named LLM endpoint (``llm.endpoints``) through the LLM layer; its backend
  decides whether that is a real OpenAI-compatible API, a replay of recorded calls, or the
  offline stand-in. Cached, so a rerun never pays twice.
- ``hf``: a local Hugging Face model, batched generation (:mod:`bpo.eval.hf_target`).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

from bpo.eval.calls import chat_request, make_client, run_unique
from bpo.eval.testsets import render_question
from bpo.schemas import ANSWERS, OPTIMIZED, read_table, write_table

log = logging.getLogger(__name__)

TARGET_KINDS = ("endpoint", "hf")


def target_runtime_kwargs(target: Mapping[str, Any], llm: Mapping[str, Any]) -> dict:
    """``endpoint``, ``cache_path`` and ``prices`` for :func:`answer_questions` and its callers
    (runtime settings, see :func:`bpo.llm.runtime_settings`). Only an ``endpoint`` target has an
    endpoint."""
    from bpo.llm import runtime_settings

    return runtime_settings(llm, target["endpoint"] if target["kind"] == "endpoint" else None)


def answer_questions(
    questions: Sequence[str],
    target: Mapping[str, Any],
    *,
    endpoint: Mapping[str, Any] | None = None,
    cache_path: str | None = None,
    prices: Mapping | None = None,
    stage: str = "answer",
    name: str = "target",
) -> list[tuple[str | None, str, str]]:
    """``(text, status, backend)`` per question from one configured target."""
    kind = target.get("kind", "endpoint")
    if kind == "endpoint":
        if endpoint is None or cache_path is None:
            raise ValueError(f"target '{name}': an endpoint target needs the endpoint settings and the LLM cache path")
        client = make_client(endpoint, cache_path, stage, prices, name=target.get("endpoint"))
        gen = dict(temperature=target.get("temperature", 0.0), top_p=target.get("top_p", 1.0),
                   max_tokens=target.get("max_tokens", 1024), seed=target.get("seed"), system=target.get("system_prompt"))
        requests = [chat_request(target["model"], q, **gen) for q in questions]
        results = run_unique(client, requests, what=f"{stage} {name} ({target['model']})")
        for q, r in zip(questions, results):
            if r.status == "error":
                log.warning("%s: call failed for %r: %s", name, q[:80], r.error)
        return [(r.text, r.status, r.backend) for r in results]
    if kind == "hf":
        from bpo.eval.hf_target import generate_answers

        out = generate_answers(
            target["model"], questions,
            max_new_tokens=target.get("max_tokens", 1024), temperature=target.get("temperature", 0.0),
            top_p=target.get("top_p", 1.0), batch_size=target.get("batch_size", 8), seed=target.get("seed") or 0,
            system_prompt=target.get("system_prompt"), dtype=target.get("dtype", "auto"),
        )
        return [(text, status, "hf") for text, status in out]
    raise ValueError(f"target '{name}': unknown kind '{kind}' (known: {TARGET_KINDS})")


def answer_testset(
    optimized_path: str | Path,
    out_path: str | Path,
    *,
    target_name: str,
    target: Mapping[str, Any],
    endpoint: Mapping[str, Any] | None = None,
    cache_path: str | None = None,
    prices: Mapping | None = None,
) -> dict:
    """Answer the original and the optimized question of every item; write ``answers.parquet``."""
    items = read_table(optimized_path, OPTIMIZED).to_pylist()
    if not items:
        raise ValueError(f"{optimized_path}: no optimized prompts to answer")
    originals = [render_question(r["instruction"], r["context"]) for r in items]
    optimized = [render_question(r["optimized_instruction"], r["context"]) for r in items]
    results = answer_questions(originals + optimized, target, endpoint=endpoint, cache_path=cache_path,
                               prices=prices, stage="answer", name=target_name)
    n = len(items)
    rows = []
    for k, rec in enumerate(items):
        (a_orig, s_orig, b_orig), (a_opt, s_opt, b_opt) = results[k], results[n + k]
        rows.append({
            "item_id": rec["item_id"], "testset": rec["testset"], "target": target_name,
            "question_original": originals[k], "question_optimized": optimized[k],
            "answer_original": a_orig, "answer_optimized": a_opt,
            "status_original": s_orig, "status_optimized": s_opt,
            "backend": "+".join(sorted({b_orig, b_opt})),
        })
    write_table(rows, out_path, ANSWERS)
    statuses = Counter(s for _, s, _ in results)
    log.info("target %s answered %d items (%d questions): statuses %s", target_name, n, 2 * n, dict(statuses))
    return {"items": n, "statuses": dict(statuses)}
