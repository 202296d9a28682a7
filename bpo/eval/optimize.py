"""An optimizer rewrites each test prompt -> ``results/<run>/eval/{testset}/{optimizer}/optimized.parquet``.

Kinds (``eval.optimizers.<name>.kind``): a local model (trained here, or any folder / hub id)
generates through :mod:`bpo.optimizer`; ``identity`` keeps every prompt; ``llm_rewrite`` asks an
endpoint to improve it (:func:`rewrite_with_llm`). Context is never rewritten. Two ways to get there (``context_mode``):

- ``with_context`` (the training format): the optimizer sees instruction + context, the way
  its SFT pairs were built (the rewrite joined with the unchanged context). Its output is
  accepted only if it still ends (or starts) with the context verbatim; the rest is the
  optimized instruction. Anything else falls back to the original, with the reason.
- ``instruction``: the optimizer sees the instruction alone and the context is attached
  afterwards; it cannot touch the context at all, at the price of not seeing it.

A fallback keeps the original instruction (``optimized_instruction == instruction``) and
names its reason, so the report can count how often the optimizer was not used. Identity rows
are unchanged by design and carry no fallback reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bpo.drops import locations_of
from bpo.eval.testsets import TestItem, load_configured, render_question
from bpo.generation import EngineRecord, GenerationSettings
from bpo.optimizer import optimize_prompts
from bpo.schemas import OPTIMIZED, write_table
from bpo.settings import LLMRuntime
from bpo.settings.optimize import IdentitySettings, LLMRewriteSettings, OptimizeSettings, optimizer_kind
from bpo.templates import RewriteTemplate

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
        instruction = text[len(ctx) :].strip()
    else:
        return None, "context altered"
    if not instruction:
        return None, "empty instruction"
    return instruction, None


def optimize_items(
    items: Sequence[TestItem],
    model: str,
    settings: GenerationSettings,
    *,
    context_mode: str,
    prompt_format: str | None = None,
    format_override: str | None = None,
    histories: Sequence[Sequence[Mapping[str, str]]] | None = None,
) -> tuple[list[tuple[str, str | None]], EngineRecord | None]:
    """``(optimized_instruction, fallback_reason)`` per item, and the engine that generated.
    ``prompt_format``/``format_override``: see :func:`bpo.optimizer.optimize_prompts`;
    ``histories``: one conversation so far per item (multi-turn), None for single-turn."""
    if context_mode not in CONTEXT_MODES:
        raise ValueError(f"eval.optimizers.<name>.context_mode: unknown mode '{context_mode}' (known: {CONTEXT_MODES})")
    if context_mode == "with_context":
        prompts = [render_question(it.instruction, it.context) for it in items]
    else:
        prompts = [it.instruction for it in items]
    # histories only when given: the single-turn call stays exactly what it was
    extra = {"histories": [list(h) for h in histories]} if histories is not None else {}
    rewrites = optimize_prompts(
        model, prompts, settings, prompt_format=prompt_format, format_override=format_override, **extra
    )
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


def write_optimized(
    items: Sequence[TestItem],
    rewritten: Sequence[tuple[str, str | None]],
    testset: str,
    optimizer: str,
    engine: EngineRecord | None,
    out_path: str | Path,
    metadata: dict[str, str] | None = None,
) -> None:
    """The OPTIMIZED table, with the engine (or other provenance) in its metadata (the CLI's file
    mode writes it too)."""
    rows = [
        {
            "item_id": it.item_id,
            "testset": testset,
            "optimizer": optimizer,
            "category": it.category,
            "instruction": it.instruction,
            "context": it.context,
            "optimized_instruction": opt,
            "fallback_reason": reason,
            "reference_optimized": it.reference_optimized,
        }
        for it, (opt, reason) in zip(items, rewritten)
    ]
    write_table(rows, out_path, OPTIMIZED, metadata={**(engine.metadata() if engine else {}), **(metadata or {})})


def _finish(name: str, testset: str, rewritten: list, dropped, how: str) -> dict:
    fallbacks = Counter(reason for _, reason in rewritten if reason is not None)
    log.info(
        "%s on %s: %d prompts optimized with %s, %d fell back to the original (%s)",
        name,
        testset,
        len(rewritten),
        how,
        sum(fallbacks.values()),
        dict(fallbacks) or "none",
    )
    return {
        "items": len(rewritten),
        "fallbacks": dict(fallbacks),
        "dropped": dict(dropped),
        "drop_locations": locations_of(dropped),
    }


def optimize_testset(out_path: str | Path, settings: OptimizeSettings, model: str) -> dict:
    """Load the test set of ``settings``, rewrite it with the optimizer at ``model`` (a folder or
    hub id: the trained optimizer's folder when ``settings.model`` is None), write ``out_path``."""
    ts = load_configured(settings.testset)
    rewritten, engine = optimize_items(
        ts.items, model, settings.generation, context_mode=settings.context_mode, prompt_format=settings.prompt_format
    )
    write_optimized(ts.items, rewritten, settings.testset.name, settings.name, engine, out_path)
    return {
        **_finish(settings.name, settings.testset.name, rewritten, ts.dropped, str(engine)),
        "engine": str(engine) if engine else None,
    }


def identity_testset(out_path: str | Path, settings: IdentitySettings) -> dict:
    """Every prompt unchanged, no model loaded: the sanity row of the comparison (ties)."""
    ts = load_configured(settings.testset)
    rewritten = [(it.instruction, None) for it in ts.items]
    write_optimized(
        ts.items,
        rewritten,
        settings.testset.name,
        settings.name,
        None,
        out_path,
        metadata={"optimizer_kind": "identity"},
    )
    return _finish(settings.name, settings.testset.name, rewritten, ts.dropped, "identity (no rewrite)")


# --- llm_rewrite -------------------------------------------------------------------------


def rewrite_reason(status: str, text: str | None, error: str | None = None) -> str | None:
    """Why an endpoint's reply cannot be used as the rewrite (None: it can)."""
    if status == "error":
        return f"call failed: {error or 'no error message'}"
    if status == "refused":
        return "refused"
    if status == "truncated":
        return "truncated"
    if text is None or not text.strip():
        return "empty output"
    return None


def rewrite_request(
    settings: LLMRewriteSettings,
    template: RewriteTemplate,
    instruction: str,
    history: Sequence[Mapping[str, str]] | None = None,
):
    """The llm_rewrite call for one instruction: ``template`` with ``{prompt}`` replaced, after
    the conversation so far (``history``, multi-turn) as earlier messages."""
    from bpo.llm import call_request

    return call_request(settings.call, template.fill(instruction), history=history)


def rewrite_with_llm(
    items: Sequence[TestItem],
    settings: LLMRewriteSettings,
    runtime: LLMRuntime,
    histories: Sequence[Sequence[Mapping[str, str]]] | None = None,
) -> list[tuple[str, str | None]]:
    """``(optimized_instruction, fallback_reason)`` per item: the endpoint rewrites the
    instruction alone (the context is attached afterwards, untouched), seeing the item's history
    when given. Calls are cached."""
    from bpo.eval.calls import run_unique
    from bpo.llm import make_client
    from bpo.templates import load_rewrite

    template = load_rewrite(settings.template, settings.template_sha256)
    histories = histories if histories is not None else [None] * len(items)
    requests = [rewrite_request(settings, template, it.instruction, h) for it, h in zip(items, histories, strict=True)]
    if not requests:
        return []
    client = make_client(settings.call.endpoint, runtime, "optimize")
    results = run_unique(client, requests, what=f"llm_rewrite {settings.name} ({settings.call.model})")
    out: list[tuple[str, str | None]] = []
    for item, res in zip(items, results):
        reason = rewrite_reason(res.status, res.text, res.error)
        if reason is not None:
            log.warning("item %s: rewrite unusable (%s); the original prompt is kept", item.item_id, reason)
            out.append((item.instruction, reason))
        else:
            out.append((res.text.strip(), None))
    return out


def llm_rewrite_testset(out_path: str | Path, settings: LLMRewriteSettings, runtime: LLMRuntime) -> dict:
    """Rewrite the test set of ``settings`` through its endpoint; write ``out_path``."""
    ts = load_configured(settings.testset)
    rewritten = rewrite_with_llm(ts.items, settings, runtime)
    write_optimized(
        ts.items,
        rewritten,
        settings.testset.name,
        settings.name,
        None,
        out_path,
        metadata={"optimizer_kind": "llm_rewrite", "rewrite_model": settings.call.model},
    )
    return _finish(settings.name, settings.testset.name, rewritten, ts.dropped, f"llm_rewrite {settings.call.model}")


# --- one turn of many conversations (multi-turn test sets; bpo.eval.conversation) ---------


def optimize_turn(items: Sequence[TestItem], histories, settings: OptimizeSettings, model: str):
    """A local optimizer rewrites each item's message seeing its conversation so far."""
    return optimize_items(
        items,
        model,
        settings.generation,
        context_mode=settings.context_mode,
        prompt_format=settings.prompt_format,
        histories=histories,
    )


def identity_turn(items: Sequence[TestItem], histories, settings: IdentitySettings):
    """Every message unchanged (the history is ignored): the conversations stay the originals."""
    return [(it.instruction, None) for it in items], None


def llm_rewrite_turn(items: Sequence[TestItem], histories, settings: LLMRewriteSettings, runtime: LLMRuntime):
    """The endpoint rewrites each message after the conversation so far."""
    return rewrite_with_llm(items, settings, runtime, histories), None


def optimizer_entry(
    config: Mapping[str, Any], params: Mapping[str, Any], model_input: str | None, entry: str
) -> tuple[Any, Any, dict[str, Any]] | None:
    """``(function, settings, extra keyword arguments)`` of the optimizer whose canonical settings
    are ``params``: the library function its kind registers as ``entry`` (``run``: a test set,
    ``turn``: one turn of conversations; bpo.settings.optimize.OPTIMIZER_KINDS), or None when the
    kind registers none. ``model_input``: the rule's model folder, if any (else a kind with a model
    input uses the hub id it names); the runtime (limits, cache, prices) of a kind that calls an
    LLM comes from ``config``."""
    import importlib

    kind = optimizer_kind(config, params["name"])
    if getattr(kind, entry) is None:
        return None
    settings = kind.settings.from_params(params)
    extra: dict[str, Any] = {}
    if kind.model_input:
        extra["model"] = model_input or settings.model
    if hasattr(settings, "call"):
        extra["runtime"] = LLMRuntime.from_config(config, settings.call.endpoint.name)
    module, function = getattr(kind, entry).split(":")
    return getattr(importlib.import_module(module), function), settings, extra


def run_optimizer(
    out_path: str | Path, config: Mapping[str, Any], params: Mapping[str, Any], model_input: str | None = None
) -> dict:
    """Rewrite a test set with the optimizer whose canonical settings are ``params``
    (:func:`optimizer_entry`, ``run``)."""
    fn, settings, extra = optimizer_entry(config, params, model_input, "run")
    return fn(out_path, settings, **extra)
