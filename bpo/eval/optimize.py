"""The optimizer rewrites each test prompt -> ``results/eval/{testset}/optimized.parquet``.

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
from typing import Sequence

from bpo.eval.testsets import TestItem, load_testset, render_question
from bpo.generation import EngineRecord, GenerationSettings
from bpo.optimizer import optimize_prompts
from bpo.schemas import OPTIMIZED, write_table
from bpo.settings.optimize import OptimizeSettings

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
    items: Sequence[TestItem], model: str, settings: GenerationSettings, *, context_mode: str,
    prompt_format: str | None = None, format_override: str | None = None,
) -> tuple[list[tuple[str, str | None]], EngineRecord | None]:
    """``(optimized_instruction, fallback_reason)`` per item, and the engine that generated.
    ``prompt_format``/``format_override``: see :func:`bpo.optimizer.optimize_prompts`."""
    if context_mode not in CONTEXT_MODES:
        raise ValueError(f"eval.optimizer.context_mode: unknown mode '{context_mode}' (known: {CONTEXT_MODES})")
    if context_mode == "with_context":
        prompts = [render_question(it.instruction, it.context) for it in items]
    else:
        prompts = [it.instruction for it in items]
    rewrites = optimize_prompts(model, prompts, settings, prompt_format=prompt_format,
                                format_override=format_override)
    if len(rewrites.results) != len(items):
        raise RuntimeError(f"optimizer returned {len(rewrites.results)} results for {len(items)} prompts")
    out: list[tuple[str, str | None]] = []
    for item, res in zip(items, rewrites.results):
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
    return out, rewrites.engine


def write_optimized(items: Sequence[TestItem], rewritten: Sequence[tuple[str, str | None]], testset: str,
                    engine: EngineRecord | None, out_path: str | Path) -> None:
    """The OPTIMIZED table, with the engine in its metadata (the CLI's file mode writes it too)."""
    rows = [
        {
            "item_id": it.item_id, "testset": testset, "instruction": it.instruction, "context": it.context,
            "optimized_instruction": opt, "fallback_reason": reason, "reference_optimized": it.reference_optimized,
        }
        for it, (opt, reason) in zip(items, rewritten)
    ]
    write_table(rows, out_path, OPTIMIZED, metadata=engine.metadata() if engine else None)


def optimize_testset(out_path: str | Path, settings: OptimizeSettings, model: str) -> dict:
    """Load the test set of ``settings``, rewrite it with the optimizer at ``model`` (a folder or
    hub id: the trained optimizer's folder when ``settings.model`` is None), write ``out_path``."""
    ts_cfg = settings.testset
    ts = load_testset(ts_cfg.name, ts_cfg.path, ts_cfg.format, columns=ts_cfg.columns, sample=ts_cfg.sample,
                      seed=ts_cfg.seed)
    rewritten, engine = optimize_items(ts.items, model, settings.generation, context_mode=settings.context_mode,
                                       prompt_format=settings.prompt_format)
    write_optimized(ts.items, rewritten, ts_cfg.name, engine, out_path)
    fallbacks = Counter(reason for _, reason in rewritten if reason is not None)
    log.info("%s: %d prompts optimized with %s, %d fell back to the original (%s)", ts_cfg.name, len(rewritten),
             engine, sum(fallbacks.values()), dict(fallbacks) or "none")
    return {"items": len(rewritten), "fallbacks": dict(fallbacks), "dropped": dict(ts.dropped),
            "engine": str(engine) if engine else None}
