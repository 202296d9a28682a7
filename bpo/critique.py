"""Critique stage: one chat call per preference pair, parsed into an optimized instruction.

For each pair the critique template (loaded and checked by :mod:`bpo.templates`) is filled with
the instruction, the context if any, the bad response and the good response, and sent as a
single user message. A pair with a history (the earlier turns of a multi-turn source) gets the
multi-turn template instead (``critique.multi_turn_template``): the same fields plus the
rendered conversation so far, and the critic rewrites the last user message only. Calls go
through :class:`bpo.llm.LLMClient`, so they are cached (a rerun pays nothing twice), rate-limited
and budget-capped. Replies are parsed by :mod:`bpo.critique_parse` and written as ``CRITIQUES``
rows, one per pair, failures included.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence

import pyarrow.compute as pc

from bpo.atomic import write_json
from bpo.critique_parse import parse_critique
from bpo.schemas import CRITIQUES, PAIRS, read_table, write_table
from bpo.settings import CritiqueEstimateSettings, CritiqueSettings, LLMCall, LLMRuntime
from bpo.templates import CritiqueTemplate, TemplateError, load_critique

log = logging.getLogger(__name__)

STAGE = "critique"


class CritiqueError(RuntimeError):
    """The critique stage cannot finish (too many failed calls, ...)."""


def expected_stops() -> tuple[type[BaseException], ...]:
    """Errors that end a critique job with a one-line reason, not a traceback: budget reached,
    failed calls, an unusable template or pairs file."""
    from bpo.llm import BudgetExceeded, LLMError
    from bpo.schemas import SchemaError

    return (BudgetExceeded, LLMError, CritiqueError, TemplateError, SchemaError)


# ---------------------------------------------------------------- requests


def select_pairs(pairs_path: str | os.PathLike, source: str | None) -> list[dict]:
    """Rows of ``pairs_path`` (PAIRS schema) for one source (all when ``source`` is None)."""
    table = read_table(pairs_path, PAIRS)
    if source is not None:
        table = table.filter(pc.equal(table["source"], source))
    return table.to_pylist()


def build_requests(
    pairs: Sequence[Mapping], template: CritiqueTemplate, call: LLMCall, multi_turn: CritiqueTemplate | None = None
) -> list:
    """One :class:`ChatRequest` per pair (the rendered template as the user message), in the pairs'
    order; a pair with a history is rendered with ``multi_turn`` (required then)."""
    from bpo.history import render_history
    from bpo.llm import call_request

    requests = []
    for pair in pairs:
        fields = dict(
            instruction=pair["instruction"],
            context=pair.get("context") or "",
            bad_response=pair["bad_response"],
            good_response=pair["good_response"],
        )
        if pair.get("history"):
            if multi_turn is None:
                raise CritiqueError(
                    f"pair {pair['pair_id']} ({pair['source']}) has a history but no multi-turn "
                    "template is set (critique.multi_turn_template; sources.<name>.multi_turn)"
                )
            text = multi_turn.render(**fields, history=render_history(pair["history"]))
        else:
            text = template.render(**fields)
        requests.append(call_request(call, text))
    return requests


def critique_rows(pairs: Sequence[Mapping], requests: Sequence, results: Sequence, model: str) -> list[dict]:
    """Join pairs, requests and results (same order) into ``CRITIQUES`` rows."""
    if not (len(pairs) == len(requests) == len(results)):
        raise CritiqueError(f"{len(pairs)} pairs, {len(requests)} requests but {len(results)} results")
    rows = []
    for pair, req, res in zip(pairs, requests, results):
        if res.status == "error" or res.text is None:
            comparison, optimized = None, None
            parse_error = f"call failed: {res.error or 'no reply text'}"
        else:
            parsed = parse_critique(res.text)
            comparison, optimized, parse_error = parsed.comparison, parsed.optimized_instruction, parsed.parse_error
        rows.append(
            {
                "pair_id": pair["pair_id"],
                "source": pair["source"],
                "request_key": res.key or req.key,
                "model": model,
                "status": res.status,
                "raw_reply": res.text,
                "comparison": comparison,
                "optimized_instruction": optimized,
                "parse_error": parse_error,
                "prompt_tokens": res.prompt_tokens,
                "completion_tokens": res.completion_tokens,
                "backend": res.backend,
            }
        )
    return rows


def _as_dict(obj) -> dict:
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


def _summary(rows: Sequence[Mapping]) -> dict:
    status = Counter(r["status"] for r in rows)
    parsed = sum(r["optimized_instruction"] is not None for r in rows)
    problems = Counter((r["parse_error"] or "").split(";")[0] for r in rows if r["parse_error"])
    return {
        "pairs": len(rows),
        "status": dict(status),
        "parsed": parsed,
        "parse_problems": dict(problems.most_common(10)),
        "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in rows),
        "completion_tokens": sum(r["completion_tokens"] or 0 for r in rows),
        "backends": sorted({r["backend"] for r in rows}),
    }


def _requests(pairs: Sequence[Mapping], template: CritiqueTemplate, settings: CritiqueSettings) -> list:
    multi_turn = None
    if settings.multi_turn_template is not None and any(p.get("history") for p in pairs):
        multi_turn = load_critique(settings.multi_turn_template, settings.multi_turn_template_sha256, multi_turn=True)
    return build_requests(pairs, template, settings.call, multi_turn)


def run_critique(
    settings: CritiqueSettings,
    runtime: LLMRuntime,
    *,
    pairs_path: str | os.PathLike,
    source: str,
    output: str | os.PathLike,
) -> dict:
    """Critique every pair of ``source`` in ``pairs_path`` and write ``output`` (CRITIQUES).

    Answered calls are in the cache the moment they arrive, so when the budget cap
    (``runtime.budget_usd``) stops the run (:class:`bpo.llm.BudgetExceeded`) or more than
    ``runtime.max_error_fraction`` of the calls fail (:class:`CritiqueError`), nothing is
    written and the rerun sends only what is still missing.
    """
    from bpo.llm import make_client

    client = make_client(settings.call.endpoint, runtime, STAGE)  # checks the API key before any work
    template = load_critique(settings.template, settings.template_sha256)
    model, max_error_fraction = settings.call.model, runtime.max_error_fraction
    pairs = select_pairs(pairs_path, source)
    if not pairs:
        log.warning("%s: no pairs for source %r; writing an empty critique table", pairs_path, source)
    requests = _requests(pairs, template, settings)
    if requests:
        est = _as_dict(client.estimate(requests))
        log.info(
            "critique %s: %d pairs, template %s (sha256 %s); estimate before sending: %s",
            source,
            len(pairs),
            settings.template,
            template.sha256[:12],
            json.dumps(est, default=str),
        )
        results = client.run(requests)  # capped at runtime.budget_usd
    else:
        results = []
    rows = critique_rows(pairs, requests, results, model)

    summary = _summary(rows)
    log.info("critique %s: %s", source, json.dumps(summary))
    errors = summary["status"].get("error", 0)
    if rows and errors / len(rows) > max_error_fraction:
        examples = sorted({r["parse_error"] for r in rows if r["status"] == "error"})[:3]
        raise CritiqueError(
            f"critique {source}: {errors} of {len(rows)} calls failed (more than critique.max_error_fraction="
            f"{max_error_fraction}); nothing written. Answered calls are cached: rerun to retry only the "
            f"failed ones. First errors: {examples}"
        )
    if errors:
        log.warning(
            "critique %s: %d failed call(s) recorded with status 'error' (within max_error_fraction)", source, errors
        )
    write_table(rows, output, CRITIQUES)
    return summary


def estimate_critiques(
    settings: CritiqueEstimateSettings,
    runtime: LLMRuntime,
    *,
    pairs_path: str | os.PathLike,
    output: str | os.PathLike,
) -> dict:
    """Dry run: calls, cache hits, tokens and cost the critique stage would make, per source
    (``settings.sources``) and in total, written as JSON to ``output``. Nothing is sent."""
    from bpo.llm import make_client

    critique, budget_usd = settings.critique, runtime.budget_usd
    template = load_critique(critique.template, critique.template_sha256)
    # No API key needed to count: an estimate before exporting the key is the point.
    client = make_client(critique.call.endpoint, runtime, STAGE, check_key=False)
    report: dict = {
        "model": critique.call.model,
        "template": critique.template,
        "template_sha256": template.sha256,
        "budget_usd_per_source": budget_usd,
        "sources": {},
    }
    totals: Counter = Counter()
    for source in settings.sources:
        pairs = select_pairs(pairs_path, source)
        requests = _requests(pairs, template, critique)
        est = _as_dict(client.estimate(requests)) if requests else {}
        est["pairs"] = len(pairs)
        report["sources"][source] = est
        for key, value in est.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value is not None:
                totals[key] += value
        log.info("critique estimate %s: %s", source, json.dumps(est, default=str))
    report["total"] = dict(totals)
    if any(e.get("usd") is None and e.get("calls") for e in report["sources"].values()):
        report["total"]["usd"] = None  # a model without a price: the total is unknown, not partial
    over = [
        s
        for s, e in report["sources"].items()
        if budget_usd is not None and isinstance(e.get("usd"), (int, float)) and e["usd"] > budget_usd
    ]
    report["over_budget"] = over
    if over:
        log.warning("critique estimate: %s would exceed the budget of %.2f USD per source", over, budget_usd)
    write_json(report, output, indent=2, ensure_ascii=True, default=str)
    log.info("critique estimate total: %s", json.dumps(report["total"]))
    return report
