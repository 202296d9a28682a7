"""Pairwise judging of optimized-prompt answers against original-prompt answers.

Each pair is judged twice through the LLM layer (cached): once with the optimized answer as
Assistant A, once with the original answer as A. The judge always sees the ORIGINAL question:
the user's intent is what both answers are measured against, the optimized prompt is only a
means. Verdicts are combined with the MT-bench rule (:func:`bpo.eval.verdicts.combine_orders`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

from bpo.eval.calls import chat_request, run_unique
from bpo.eval.verdicts import combine_orders, parse_verdict
from bpo.schemas import ANSWERS, JUDGMENTS, read_table, write_table
from bpo.settings import LLMRuntime
from bpo.settings.evaluate import JudgeSettings

log = logging.getLogger(__name__)

PLACEHOLDERS = ("question", "answer_a", "answer_b")
VERDICT_TOKENS = ("[[A]]", "[[B]]", "[[C]]")
_PLACEHOLDER = re.compile(r"\{(question|answer_a|answer_b)\}")
# Rows decided without a judge call (identical answers, missing answer) carry this backend.
NO_CALL = "none"


class JudgeTemplateError(ValueError):
    pass


def load_template(path: str | Path, sha256: str | None = None) -> str:
    """The judge prompt: '#' comment lines dropped, placeholders and verdict tokens checked.
    ``sha256``: the content hash the settings were built with (the file must still match it)."""
    path = Path(path)
    if not path.exists():
        raise JudgeTemplateError(f"{path}: judge template not found")
    if sha256 is not None and hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        raise JudgeTemplateError(f"{path}: the judge template changed after the workflow was planned; run again")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    text = "\n".join(lines).strip("\n")
    for name in PLACEHOLDERS:
        count = text.count("{" + name + "}")
        if count != 1:
            raise JudgeTemplateError(f"{path}: placeholder {{{name}}} must appear exactly once (found {count})")
    missing = [tok for tok in VERDICT_TOKENS if tok not in text]
    if missing:
        raise JudgeTemplateError(f"{path}: the judge must be told the verdict tokens; missing {missing}")
    return text


def fill_template(template: str, *, question: str, answer_a: str, answer_b: str) -> str:
    """Single pass: text inside the answers is never treated as a placeholder."""
    values = {"question": question, "answer_a": answer_a, "answer_b": answer_b}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _usable(answer: Any) -> bool:
    return isinstance(answer, str) and bool(answer.strip())


def judge_answers(answers_path: str | Path, out_path: str | Path, judge: JudgeSettings, runtime: LLMRuntime) -> dict:
    """Judge every pair of ``answers_path`` in both orders and write ``judgments.parquet``.

    Returns counts (outcomes, unparseable verdicts by reason) for the log and tests.
    """
    template = load_template(judge.template, judge.template_sha256)
    answers = read_table(answers_path, ANSWERS).to_pylist()
    model = judge.model
    gen = dict(temperature=judge.temperature, top_p=judge.top_p, max_tokens=judge.max_tokens, seed=judge.seed,
               system=judge.system_prompt)

    rows: list[dict] = []
    requests: list = []
    pending: list[tuple[int, int, int]] = []  # (row index, request index order 1, order 2)
    for rec in answers:
        row = {
            "item_id": rec["item_id"], "testset": rec["testset"], "target": rec["target"], "judge_model": model,
            "verdict_optimized_first": None, "verdict_original_first": None, "outcome": "invalid",
            "raw_optimized_first": None, "raw_original_first": None, "backend": NO_CALL,
        }
        rows.append(row)
        optimized, original, question = rec["answer_optimized"], rec["answer_original"], rec["question_original"]
        if not (_usable(optimized) and _usable(original)):
            log.warning("item %s: answer missing (original %s, optimized %s): pair invalid",
                        rec["item_id"], rec["status_original"], rec["status_optimized"])
            continue
        if judge.identical_as_tie and optimized.strip() == original.strip():
            # Same text on both sides (typically an unchanged prompt at temperature 0): a tie
            # by construction; a judge call would only measure its position bias.
            row.update(verdict_optimized_first="C", verdict_original_first="C", outcome="tie")
            continue
        first = fill_template(template, question=question, answer_a=optimized, answer_b=original)
        second = fill_template(template, question=question, answer_a=original, answer_b=optimized)
        pending.append((len(rows) - 1, len(requests), len(requests) + 1))
        requests += [chat_request(model, first, **gen), chat_request(model, second, **gen)]

    unparseable: Counter = Counter()
    if requests:
        from bpo.llm import make_client  # here: the report imports this module without calling an LLM

        client = make_client(judge.endpoint, runtime, "judge")
        results = run_unique(client, requests, what=f"judge {model}")
        for row_i, i1, i2 in pending:
            r1, r2 = results[i1], results[i2]
            v1, v2 = parse_verdict(r1.text), parse_verdict(r2.text)
            for res, parsed in ((r1, v1), (r2, v2)):
                if parsed.verdict is None:
                    reason = parsed.reason if res.status != "error" else f"call failed: {res.error}"
                    unparseable[reason.split(":")[0]] += 1
                    log.warning("item %s: no verdict (%s); reply: %r", rows[row_i]["item_id"], reason, (res.text or "")[:200])
            outcome = combine_orders(v1.verdict, v2.verdict)
            backends = sorted({r1.backend, r2.backend})
            rows[row_i].update(
                verdict_optimized_first=v1.verdict, verdict_original_first=v2.verdict, outcome=outcome.outcome,
                raw_optimized_first=r1.text, raw_original_first=r2.text, backend="+".join(backends),
            )
    write_table(rows, out_path, JUDGMENTS)
    outcomes = Counter(r["outcome"] for r in rows)
    log.info("judged %d pairs with %s: %s; verdicts without a decision: %s", len(rows), model, dict(outcomes), dict(unparseable) or "none")
    return {"outcomes": dict(outcomes), "unparseable": dict(unparseable), "calls": len(requests)}
