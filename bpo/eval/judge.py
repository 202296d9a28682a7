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
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bpo.eval.calls import run_unique
from bpo.eval.verdicts import combine_orders, parse_verdict
from bpo.schemas import ANSWERS, JUDGMENTS, read_table, write_table
from bpo.settings import LLMRuntime
from bpo.settings.evaluate import JudgeSettings

log = logging.getLogger(__name__)

PLACEHOLDERS = ("question", "answer_a", "answer_b")
VERDICT_TOKENS = ("[[A]]", "[[B]]", "[[C]]")
_PLACEHOLDER = re.compile(r"\{(question|answer_a|answer_b)\}")
# Lines that split a template into a system and a user message.
SYSTEM_MARK, USER_MARK = "=== system ===", "=== user ==="
# Rows decided without a judge call (identical answers, missing answer) carry this backend.
NO_CALL = "none"
# The rule recorded for identical answers counted as a tie without a call.
IDENTICAL_RULE = "identical_answers"
PROTOCOLS = ("both_orders", "single_random")


class JudgeTemplateError(ValueError):
    pass


@dataclass(frozen=True)
class JudgeTemplate:
    """The judge prompt: an optional system message and the user message."""

    system: str | None
    user: str

    def fill(self, *, question: str, answer_a: str, answer_b: str) -> tuple[str | None, str]:
        values = dict(question=question, answer_a=answer_a, answer_b=answer_b)
        return (fill_template(self.system, **values) if self.system is not None else None,
                fill_template(self.user, **values))


def _split_system(text: str, path: Path) -> tuple[str | None, str]:
    lines = text.splitlines()
    marks = [i for i, line in enumerate(lines) if line.strip() in (SYSTEM_MARK, USER_MARK)]
    if not marks:
        return None, text
    kinds = [lines[i].strip() for i in marks]
    if kinds != [SYSTEM_MARK, USER_MARK] or any(line.strip() for line in lines[:marks[0]]):
        raise JudgeTemplateError(f"{path}: a template with a system message starts with a '{SYSTEM_MARK}' line and "
                                 f"has one '{USER_MARK}' line after it (found {kinds})")
    system = "\n".join(lines[marks[0] + 1:marks[1]]).strip("\n")
    user = "\n".join(lines[marks[1] + 1:]).strip("\n")
    if not system.strip() or not user.strip():
        raise JudgeTemplateError(f"{path}: the system and the user part must both have text")
    return system, user


def load_template(path: str | Path, sha256: str | None = None) -> JudgeTemplate:
    """The judge prompt: '#' comment lines dropped, an optional system part split off,
    placeholders (each once, in either part) and verdict tokens checked. ``sha256``: the
    content hash the settings were built with (the file must still match it)."""
    path = Path(path)
    if not path.exists():
        raise JudgeTemplateError(f"{path}: judge template not found")
    if sha256 is not None and hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        raise JudgeTemplateError(f"{path}: the judge template changed after the workflow was planned; run again")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    system, user = _split_system("\n".join(lines).strip("\n"), path)
    text = (system or "") + "\n" + user
    for name in PLACEHOLDERS:
        count = text.count("{" + name + "}")
        if count != 1:
            raise JudgeTemplateError(f"{path}: placeholder {{{name}}} must appear exactly once (found {count})")
    missing = [tok for tok in VERDICT_TOKENS if tok not in text]
    if missing:
        raise JudgeTemplateError(f"{path}: the judge must be told the verdict tokens; missing {missing}")
    return JudgeTemplate(system, user)


def fill_template(template: str, *, question: str, answer_a: str, answer_b: str) -> str:
    """Single pass: text inside the answers is never treated as a placeholder."""
    values = {"question": question, "answer_a": answer_a, "answer_b": answer_b}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def optimized_first(order_seed: int, testset: str, item_id: str) -> bool:
    """single_random: whether the optimized answer is shown first for this item. Depends only
    on the seed, the test set and the item (stable across runs, optimizers and targets)."""
    digest = hashlib.sha256(f"{order_seed}\n{testset}\n{item_id}".encode("utf-8")).digest()
    return digest[0] % 2 == 0


# One order's verdict -> outcome for the optimized answer.
_SINGLE = {True: {"A": "win", "B": "lose", "C": "tie"}, False: {"A": "lose", "B": "win", "C": "tie"}}


def single_order_outcome(verdict: str | None, is_optimized_first: bool) -> str:
    return "invalid" if verdict is None else _SINGLE[is_optimized_first][verdict]


def _usable(answer: Any) -> bool:
    return isinstance(answer, str) and bool(answer.strip())


def _orders(judge: JudgeSettings, rec: dict) -> tuple[bool, ...]:
    """The orders judged for one item: True = optimized answer first."""
    if judge.protocol == "both_orders":
        return (True, False)
    if judge.protocol == "single_random":
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
    template = load_template(judge.template, judge.template_sha256)
    if template.system is not None and judge.call.system_prompt:
        raise JudgeTemplateError(f"{judge.template}: the template has a system part and eval.judge.system_prompt is "
                                 "set too; keep one of them")
    answers = read_table(answers_path, ANSWERS).to_pylist()
    model = judge.call.model

    rows: list[dict] = []
    requests: list = []
    pending: list[tuple[int, dict[bool, int]]] = []  # (row index, {optimized first?: request index})
    for rec in answers:
        row = {
            "item_id": rec["item_id"], "testset": rec["testset"], "optimizer": rec["optimizer"],
            "target": rec["target"], "category": rec["category"], "judge_model": model, "protocol": judge.protocol,
            "verdict_optimized_first": None, "verdict_original_first": None, "outcome": "invalid",
            "raw_optimized_first": None, "raw_original_first": None,
            "rule_optimized_first": None, "rule_original_first": None, "backend": NO_CALL,
        }
        rows.append(row)
        orders = _orders(judge, rec)
        optimized, original, question = rec["answer_optimized"], rec["answer_original"], rec["question_original"]
        if not (_usable(optimized) and _usable(original)):
            log.warning("item %s: answer missing (original %s, optimized %s): pair invalid",
                        rec["item_id"], rec["status_original"], rec["status_optimized"])
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
                row.update({f"verdict_{_SIDE[first]}": parsed.verdict, f"raw_{_SIDE[first]}": res.text,
                            f"rule_{_SIDE[first]}": parsed.rule})
            if len(indices) == 2:
                outcome = combine_orders(verdicts[True], verdicts[False]).outcome
            else:
                (first, verdict), = verdicts.items()
                outcome = single_order_outcome(verdict, first)
            row.update(outcome=outcome, backend="+".join(sorted(backends)))
    write_table(rows, out_path, JUDGMENTS)
    outcomes = Counter(r["outcome"] for r in rows)
    log.info("judged %d pairs with %s (%s): %s; verdicts without a decision: %s", len(rows), model, judge.protocol,
             dict(outcomes), dict(unparseable) or "none")
    return {"outcomes": dict(outcomes), "unparseable": dict(unparseable), "calls": len(requests)}
