"""The trained optimizer rewrites each test prompt -> ``results/eval/{testset}/optimized.parquet``.

Context is never rewritten. Two ways to get there (``context_mode``):

- ``with_context`` (the training format): the optimizer sees instruction + context, the way
  its SFT pairs were built (the rewrite joined with the unchanged context). Its output is
  accepted only if it still ends (or starts) with the context verbatim; the rest is the
  optimized instruction. Anything else falls back to the original, with the reason.
- ``instruction``: the optimizer sees the instruction alone and the context is attached
  afterwards; it cannot touch the context at all, at the price of not seeing it.

A fallback keeps the original instruction (``optimized_instruction == instruction``) and
names its reason, so the report can count how often the optimizer was not used.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

from bpo.eval.testsets import TestItem, load_testset, render_question
from bpo.schemas import OPTIMIZED, write_table

log = logging.getLogger(__name__)

CONTEXT_MODES = ("with_context", "instruction")


def split_context(output: str, context: str) -> tuple[str | None, str | None]:
    """(optimized instruction, None) when ``output`` ends (or starts) with ``context``
    verbatim, else (None, reason). The SFT data joins contexts on either side of the
    instruction, so a trained optimizer may put it first; either way it is unchanged."""
    text, ctx = output.strip(), context.strip()
    if text.endswith(ctx):
        instruction = text[: len(text) - len(ctx)].strip()
    elif text.startswith(ctx):
        instruction = text[len(ctx):].strip()
    else:
        return None, "context altered"
    if not instruction:
        return None, "empty instruction"
    return instruction, None


def optimize_items(
    items: Sequence[TestItem],
    model: str,
    *,
    context_mode: str = "with_context",
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    greedy: bool = False,
) -> list[tuple[str, str | None]]:
    """``(optimized_instruction, fallback_reason)`` per item."""
    if context_mode not in CONTEXT_MODES:
        raise ValueError(f"eval.optimizer.context_mode: unknown mode '{context_mode}' (known: {CONTEXT_MODES})")
    from bpo.inference import optimize_prompts

    if context_mode == "with_context":
        prompts = [render_question(it.instruction, it.context) for it in items]
    else:
        prompts = [it.instruction for it in items]
    results = optimize_prompts(model, prompts, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                               batch_size=batch_size, seed=seed, greedy=greedy)
    if len(results) != len(items):
        raise RuntimeError(f"optimizer returned {len(results)} results for {len(items)} prompts")
    out: list[tuple[str, str | None]] = []
    for item, res in zip(items, results):
        if res.fallback_reason is not None:
            out.append((item.instruction, res.fallback_reason))
            continue
        text = res.text
        if context_mode == "with_context" and item.context.strip():
            text, reason = split_context(text, item.context)
            if reason is not None:
                out.append((item.instruction, reason))
                continue
        if not text.strip():
            out.append((item.instruction, "empty output"))
            continue
        out.append((text.strip(), None))
    return out


def optimize_testset(
    out_path: str | Path,
    *,
    name: str,
    testset: Mapping[str, Any],
    optimizer: Mapping[str, Any],
    model: str,
) -> dict:
    """Load test set ``name`` (config ``eval.testsets.<name>``), rewrite it with ``model``."""
    ts = load_testset(name, testset["path"], testset["format"], columns=testset.get("columns"),
                      sample=testset.get("sample", 0), seed=testset.get("seed", 42))
    rewritten = optimize_items(
        ts.items, model,
        context_mode=optimizer.get("context_mode", "with_context"),
        temperature=optimizer["temperature"], top_p=optimizer["top_p"], max_new_tokens=optimizer["max_new_tokens"],
        batch_size=optimizer["batch_size"], seed=optimizer["seed"], greedy=optimizer.get("greedy", False),
    )
    rows = [
        {
            "item_id": it.item_id, "testset": name, "instruction": it.instruction, "context": it.context,
            "optimized_instruction": opt, "fallback_reason": reason, "reference_optimized": it.reference_optimized,
        }
        for it, (opt, reason) in zip(ts.items, rewritten)
    ]
    write_table(rows, out_path, OPTIMIZED)
    fallbacks = Counter(reason for _, reason in rewritten if reason is not None)
    log.info("%s: %d prompts optimized, %d fell back to the original (%s)", name, len(rows), sum(fallbacks.values()), dict(fallbacks) or "none")
    return {"items": len(rows), "fallbacks": dict(fallbacks), "dropped": dict(ts.dropped)}
