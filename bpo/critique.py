"""Critique stage: one chat call per preference pair, parsed into an optimized instruction.

For each pair the critique template (a file under ``config/templates/``) is filled with the
instruction, the context if any, the bad response and the good response, and sent as a single
user message. Calls go through :class:`bpo.llm.LLMClient`, so they are cached (a rerun pays
nothing twice), rate-limited and budget-capped. Replies are parsed by
:mod:`bpo.critique_parse` and written as ``CRITIQUES`` rows, one per pair, failures included.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import pyarrow.compute as pc

from bpo.atomic import write_json
from bpo.critique_parse import parse_critique
from bpo.schemas import CRITIQUES, PAIRS, read_table, write_table
from bpo.settings import CritiqueEstimateSettings, CritiqueSettings, LLMCall, LLMRuntime

log = logging.getLogger(__name__)

STAGE = "critique"
PLACEHOLDERS = ("instruction", "context", "bad_response", "good_response")
_IF, _END_IF = "{if_context}", "{end_if_context}"
_PLACEHOLDER_RE = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
# Anything that looks like a placeholder but is not one is a typo ("{good_res}") to report.
_CANDIDATE_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class TemplateError(ValueError):
    """The critique template file is unusable (names the file and the problem)."""


class CritiqueError(RuntimeError):
    """The critique stage cannot finish (too many failed calls, template changed, ...)."""


def expected_stops() -> tuple[type[BaseException], ...]:
    """Errors that end a critique job with a one-line reason, not a traceback: budget reached,
    failed calls, an unusable template or pairs file."""
    from bpo.llm import BudgetExceeded, LLMError
    from bpo.schemas import SchemaError

    return (BudgetExceeded, LLMError, CritiqueError, TemplateError, SchemaError)


# ---------------------------------------------------------------- template


def template_sha256(path: str | os.PathLike) -> str:
    """Hash of the template file's bytes (the settings carry it, so an edit reruns)."""
    path = Path(path)
    if not path.is_file():
        raise TemplateError(f"critique template {path}: no such file (config key critique.template)")
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class CritiqueTemplate:
    """A parsed template: comment lines removed, the context block located."""

    path: str
    sha256: str
    body: str  # the template without comment lines, markers included

    def render(self, instruction: str, context: str, bad_response: str, good_response: str) -> str:
        has_context = bool(context and context.strip())
        lines: list[str] = []
        inside = False
        for line in self.body.split("\n"):
            marker = line.strip()
            if marker == _IF:
                inside = True
            elif marker == _END_IF:
                inside = False
            elif has_context or not inside:
                lines.append(line)
        text = "\n".join(lines).strip("\n")
        values = {
            "instruction": instruction,
            "context": context,
            "bad_response": bad_response,
            "good_response": good_response,
        }
        # One pass, so a response that itself contains "{context}" is never expanded.
        return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], text)


def load_template(path: str | os.PathLike) -> CritiqueTemplate:
    """Read and check a critique template (see ``config/templates/critique.txt`` for the syntax)."""
    path = Path(path)
    sha = template_sha256(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"critique template {path}: not UTF-8 text ({exc})") from exc
    body = "\n".join(line for line in raw.replace("\r\n", "\n").split("\n") if not line.startswith("#"))

    depth = 0
    context_inside = context_outside = 0
    for lineno, line in enumerate(body.split("\n"), 1):
        marker = line.strip()
        if marker == _IF:
            if depth:
                raise TemplateError(f"critique template {path}: nested {_IF} blocks are not supported")
            depth = 1
            continue
        if marker == _END_IF:
            if not depth:
                raise TemplateError(f"critique template {path}: {_END_IF} without {_IF}")
            depth = 0
            continue
        if _IF in line or _END_IF in line:
            raise TemplateError(f"critique template {path}: {_IF} and {_END_IF} must stand on their own line")
        n = line.count("{context}")
        if depth:
            context_inside += n
        else:
            context_outside += n
    if depth:
        raise TemplateError(f"critique template {path}: {_IF} is never closed by {_END_IF}")

    found = set(_PLACEHOLDER_RE.findall(body))
    missing = [p for p in ("instruction", "bad_response", "good_response") if p not in found]
    if missing:
        raise TemplateError(f"critique template {path}: missing placeholder(s) {', '.join('{%s}' % m for m in missing)}")
    if not context_inside and not context_outside:
        raise TemplateError(f"critique template {path}: no {{context}} placeholder; pairs with a context would lose it")
    unknown = sorted({name for name in _CANDIDATE_RE.findall(body) if name not in PLACEHOLDERS}
                     - {"if_context", "end_if_context"})
    if unknown:
        raise TemplateError(
            f"critique template {path}: unknown placeholder(s) {', '.join('{%s}' % u for u in unknown)} "
            f"(known: {', '.join('{%s}' % p for p in PLACEHOLDERS)})"
        )
    if "optimized instruction:" not in body.lower():
        # The parser and the offline stand-in both key on this label.
        raise TemplateError(f"critique template {path}: must ask for the reply label 'Optimized Instruction:'")
    return CritiqueTemplate(path=str(path), sha256=sha, body=body)


# ---------------------------------------------------------------- requests


def select_pairs(pairs_path: str | os.PathLike, source: str | None) -> list[dict]:
    """Rows of ``pairs_path`` (PAIRS schema) for one source (all when ``source`` is None)."""
    table = read_table(pairs_path, PAIRS)
    if source is not None:
        table = table.filter(pc.equal(table["source"], source))
    return table.to_pylist()


def build_requests(pairs: Sequence[Mapping], template: CritiqueTemplate, call: LLMCall) -> list:
    """One :class:`ChatRequest` per pair (the rendered template as the user message), in the pairs' order."""
    from bpo.llm import call_request

    return [call_request(call, template.render(instruction=pair["instruction"], context=pair.get("context") or "",
                                               bad_response=pair["bad_response"], good_response=pair["good_response"]))
            for pair in pairs]


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


def _check_template(template_path: str, expected_sha256: str | None) -> CritiqueTemplate:
    template = load_template(template_path)
    if expected_sha256 and template.sha256 != expected_sha256:
        raise CritiqueError(
            f"critique template {template_path} changed after the workflow was planned "
            f"(sha256 {template.sha256[:12]} != {expected_sha256[:12]}); start the run again"
        )
    return template


def _requests(pairs: Sequence[Mapping], template: CritiqueTemplate, settings: CritiqueSettings) -> list:
    return build_requests(pairs, template, settings.call)


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
    template = _check_template(settings.template, settings.template_sha256)
    model, max_error_fraction = settings.call.model, runtime.max_error_fraction
    pairs = select_pairs(pairs_path, source)
    if not pairs:
        log.warning("%s: no pairs for source %r; writing an empty critique table", pairs_path, source)
    requests = _requests(pairs, template, settings)
    if requests:
        est = _as_dict(client.estimate(requests))
        log.info("critique %s: %d pairs, template %s (sha256 %s); estimate before sending: %s",
                 source, len(pairs), settings.template, template.sha256[:12], json.dumps(est, default=str))
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
        log.warning("critique %s: %d failed call(s) recorded with status 'error' (within max_error_fraction)", source, errors)
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
    template = _check_template(critique.template, critique.template_sha256)
    # No API key needed to count: an estimate before exporting the key is the point.
    client = make_client(critique.call.endpoint, runtime, STAGE, check_key=False)
    report: dict = {"model": critique.call.model, "template": critique.template, "template_sha256": template.sha256,
                    "budget_usd_per_source": budget_usd, "sources": {}}
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
    over = [s for s, e in report["sources"].items()
            if budget_usd is not None and isinstance(e.get("usd"), (int, float)) and e["usd"] > budget_usd]
    report["over_budget"] = over
    if over:
        log.warning("critique estimate: %s would exceed the budget of %.2f USD per source", over, budget_usd)
    write_json(report, output, indent=2, ensure_ascii=True, default=str)
    log.info("critique estimate total: %s", json.dumps(report["total"]))
    return report
