"""Pairwise judging of optimized-prompt answers against original-prompt answers.

Protocols (``eval.judge.protocol``): ``both_orders`` judges each pair twice through the LLM
layer (cached), once with the optimized answer as Assistant A and once with the original answer
as A, and combines the verdicts with the MT-bench rule (:func:`bpo.eval.verdicts.combine_orders`);
``single_random`` judges one order per item, drawn from a seed (the BPO paper's protocol). The
judge always sees the ORIGINAL question: the user's intent is what both answers are measured
against, the optimized prompt is only a means. Every judged order records the parser rule that
decided its verdict.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from bpo.eval.calls import run_unique
from bpo.eval.verdicts import combine_orders, parse_verdict
from bpo.schemas import ANSWERS, JUDGMENTS, read_table, write_table
from bpo.settings import LLMRuntime
from bpo.settings.evaluate import JudgeSettings
from bpo.templates import JudgeTemplate, TemplateError, load_judge
from bpo.vocab import BOTH_ORDERS, NO_CALL, PROTOCOLS, SINGLE_RANDOM

log = logging.getLogger(__name__)

# The rule recorded for identical answers counted as a tie without a call.
IDENTICAL_RULE = "identical_answers"


def optimized_first(order_seed: int, testset: str, item_id: str) -> bool:
    """single_random: whether the optimized answer is shown first for this item. Depends only
    on the seed, the test set and the item (stable across runs, optimizers and targets)."""
    digest = hashlib.sha256(f"{order_seed}\n{testset}\n{item_id}".encode()).digest()
    return digest[0] % 2 == 0


# One order's verdict -> outcome for the optimized answer.
_SINGLE = {True: {"A": "win", "B": "lose", "C": "tie"}, False: {"A": "lose", "B": "win", "C": "tie"}}


def single_order_outcome(verdict: str | None, is_optimized_first: bool) -> str:
    return "invalid" if verdict is None else _SINGLE[is_optimized_first][verdict]


def _usable(answer: Any) -> bool:
    return isinstance(answer, str) and bool(answer.strip())


def _orders(judge: JudgeSettings, rec: dict) -> tuple[bool, ...]:
    """The orders judged for one item: True = optimized answer first."""
    if judge.protocol == BOTH_ORDERS:
        return (True, False)
    if judge.protocol == SINGLE_RANDOM:
        return (optimized_first(judge.order_seed, rec["testset"], rec["item_id"]),)
    raise ValueError(f"eval.judge.protocol: unknown protocol '{judge.protocol}' (known: {', '.join(PROTOCOLS)})")


_SIDE = {True: "optimized_first", False: "original_first"}


def judge_request(judge: JudgeSettings, template: JudgeTemplate, question: str, answer_a: str, answer_b: str):
    """The judge call for one order: the template's system part, else ``eval.judge.system_prompt``."""
    from bpo.llm import call_request  # here: the report imports this module without calling an LLM

    system, user = template.fill(question=question, answer_a=answer_a, answer_b=answer_b)
    return call_request(judge.call, user, system=system)


def judge_answers(answers_path: str | Path, out_path: str | Path, judge: JudgeSettings, runtime: LLMRuntime) -> dict:
    """Judge every pair of ``answers_path`` by ``judge.protocol`` and write ``judgments.parquet``.

    Returns counts (outcomes, unparseable verdicts by reason, calls) for the log and tests.
    """
    template = load_judge(judge.template, judge.template_sha256)
    if template.system is not None and judge.call.system_prompt:
        raise TemplateError(
            f"judge template {judge.template}: the template has a system part and "
            "eval.judge.call.system_prompt is set too; keep one of them"
        )
    answers = read_table(answers_path, ANSWERS).to_pylist()
    model = judge.call.model

    rows: list[dict] = []
    requests: list = []
    pending: list[tuple[int, dict[bool, int]]] = []  # (row index, {optimized first?: request index})
    for rec in answers:
        row = {
            "item_id": rec["item_id"],
            "testset": rec["testset"],
            "optimizer": rec["optimizer"],
            "target": rec["target"],
            "category": rec["category"],
            "judge_model": model,
            "protocol": judge.protocol,
            "verdict_optimized_first": None,
            "verdict_original_first": None,
            "outcome": "invalid",
            "raw_optimized_first": None,
            "raw_original_first": None,
            "rule_optimized_first": None,
            "rule_original_first": None,
            "backend": NO_CALL,
        }
        rows.append(row)
        orders = _orders(judge, rec)
        optimized, original, question = rec["answer_optimized"], rec["answer_original"], rec["question_original"]
        if not (_usable(optimized) and _usable(original)):
            log.warning(
                "item %s: answer missing (original %s, optimized %s): pair invalid",
                rec["item_id"],
                rec["status_original"],
                rec["status_optimized"],
            )
            continue
        if judge.identical_as_tie and optimized.strip() == original.strip():
            # Same text on both sides (typically an unchanged prompt at temperature 0): a tie
            # by construction; a judge call would only measure its position bias.
            for first in orders:
                row.update({f"verdict_{_SIDE[first]}": "C", f"rule_{_SIDE[first]}": IDENTICAL_RULE})
            row["outcome"] = "tie"
            continue
        indices = {}
        for first in orders:
            a, b = (optimized, original) if first else (original, optimized)
            indices[first] = len(requests)
            requests.append(judge_request(judge, template, question, a, b))
        pending.append((len(rows) - 1, indices))

    unparseable: Counter = Counter()
    if requests:
        from bpo.llm import make_client  # here: the report imports this module without calling an LLM

        client = make_client(judge.call.endpoint, runtime, "judge")
        results = run_unique(client, requests, what=f"judge {model} ({judge.protocol})")
        for row_i, indices in pending:
            row, verdicts, backends = rows[row_i], {}, set()
            for first, i in indices.items():
                res = results[i]
                parsed = parse_verdict(res.text, lenient=judge.lenient_verdicts)
                if parsed.verdict is None:
                    reason = parsed.reason if res.status != "error" else f"call failed: {res.error}"
                    unparseable[(reason or "no verdict").split(":")[0]] += 1
                    log.warning("item %s: no verdict (%s); reply: %r", row["item_id"], reason, (res.text or "")[:200])
                verdicts[first] = parsed.verdict
                backends.add(res.backend)
                row.update(
                    {
                        f"verdict_{_SIDE[first]}": parsed.verdict,
                        f"raw_{_SIDE[first]}": res.text,
                        f"rule_{_SIDE[first]}": parsed.rule,
                    }
                )
            if len(indices) == 2:
                outcome = combine_orders(verdicts[True], verdicts[False]).outcome
            else:
                ((first, verdict),) = verdicts.items()
                outcome = single_order_outcome(verdict, first)
            row.update(outcome=outcome, backend="+".join(sorted(backends)))
    write_table(rows, out_path, JUDGMENTS)
    outcomes = Counter(r["outcome"] for r in rows)
    log.info(
        "judged %d pairs with %s (%s): %s; verdicts without a decision: %s",
        len(rows),
        model,
        judge.protocol,
        dict(outcomes),
        dict(unparseable) or "none",
    )
    return {"outcomes": dict(outcomes), "unparseable": dict(unparseable), "calls": len(requests)}
