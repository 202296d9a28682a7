"""Rules candidate_answers and candidate_judgments: what the target makes of each candidate, and
which answers the judge prefers.

The target answers every kept candidate and each pool prompt as written, through the LLM layer
(cached: a rerun, or a candidate equal to another prompt's, is never paid twice; an interrupted
job re-pays at most the calls in flight). The judge is the evaluation's (template, strict verdict
parser unless ``eval.judge.lenient_verdicts``), always in both orders, and always sees the ORIGINAL
question: the user's intent is what answers are measured against.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path

from bpo.eval.answer import answer_questions
from bpo.eval.calls import run_unique
from bpo.eval.judge import IDENTICAL_RULE, judge_request
from bpo.eval.testsets import render_question
from bpo.eval.verdicts import combine_orders, parse_verdict
from bpo.schemas import CANDIDATE_ANSWERS, CANDIDATE_JUDGMENTS, CANDIDATES, read_table, write_table
from bpo.settings import LLMRuntime
from bpo.settings.evaluate import CandidateAnswerSettings, CandidateJudgeSettings
from bpo.templates import load_judge

log = logging.getLogger(__name__)

ORIGINAL = "original"


def answer_candidates(
    candidates_path: str | Path, out_path: str | Path, settings: CandidateAnswerSettings, runtime: LLMRuntime
) -> dict:
    """The target answers every kept candidate and every pool prompt; writes CANDIDATE_ANSWERS."""
    rows = read_table(candidates_path, CANDIDATES).to_pylist()
    todo: list[dict] = []
    originals: dict[str, str] = {}
    for r in rows:
        question = render_question(r["instruction"], r["context"])
        if r["prompt_id"] not in originals:
            originals[r["prompt_id"]] = question
            todo.append({"prompt_id": r["prompt_id"], "candidate_id": f"{r['prompt_id']}:{ORIGINAL}", "q": question})
        if r["drop_reason"] is None:
            todo.append(
                {
                    "prompt_id": r["prompt_id"],
                    "candidate_id": r["candidate_id"],
                    "q": render_question(r["optimized_instruction"], r["context"]),
                }
            )
    if not todo:
        raise ValueError(f"{candidates_path}: no candidates to answer")
    target = settings.target
    answers = answer_questions([t["q"] for t in todo], target, runtime, stage="refine")
    out = [
        {
            "prompt_id": t["prompt_id"],
            "candidate_id": t["candidate_id"],
            "is_original": t["candidate_id"].endswith(f":{ORIGINAL}"),
            "target": target.name,
            "question": t["q"],
            "question_original": originals[t["prompt_id"]],
            "answer": text,
            "status": status,
            "backend": backend,
        }
        for t, (text, status, backend) in zip(todo, answers)
    ]
    write_table(out, out_path, CANDIDATE_ANSWERS)
    stats = {"answers": len(out), "prompts": len(originals), "statuses": dict(Counter(a[1] for a in answers))}
    log.info("target %s answered the candidates: %s", target.name, stats)
    return stats


def matches(answers: list[dict], compare: str) -> list[tuple[dict, dict]]:
    """(a, b) answer pairs to judge, per prompt: each candidate against the original, or every two
    candidates (round_robin)."""
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for a in answers:
        by_prompt[a["prompt_id"]].append(a)
    out = []
    for group in by_prompt.values():
        cands = [a for a in group if not a["is_original"]]
        if compare == "vs_original":
            original = next(a for a in group if a["is_original"])
            out += [(c, original) for c in cands]
        else:
            out += list(combinations(cands, 2))
    return out


def _usable(answer) -> bool:
    return isinstance(answer, str) and bool(answer.strip())


def judge_candidates(
    answers_path: str | Path, out_path: str | Path, settings: CandidateJudgeSettings, runtime: LLMRuntime
) -> dict:
    """Judge every match of ``settings.compare`` in both orders; writes CANDIDATE_JUDGMENTS."""
    judge = settings.judge
    template = load_judge(judge.template, judge.template_sha256)
    answers = read_table(answers_path, CANDIDATE_ANSWERS).to_pylist()
    rows, requests, pending = [], [], []
    for a, b in matches(answers, settings.compare):
        row = dict.fromkeys(CANDIDATE_JUDGMENTS.names)
        row.update(
            prompt_id=a["prompt_id"], a_id=a["candidate_id"], b_id=b["candidate_id"], judge_model=judge.call.model
        )
        row.update(outcome="invalid", backend="none")
        rows.append(row)
        if not (_usable(a["answer"]) and _usable(b["answer"])):
            continue
        if judge.identical_as_tie and a["answer"].strip() == b["answer"].strip():
            row.update(
                verdict_a_first="C",
                verdict_b_first="C",
                rule_a_first=IDENTICAL_RULE,
                rule_b_first=IDENTICAL_RULE,
                outcome="tie",
                consistent=True,
            )
            continue
        question = a["question_original"]
        pending.append((row, len(requests)))
        requests.append(judge_request(judge, template, question, a["answer"], b["answer"]))
        requests.append(judge_request(judge, template, question, b["answer"], a["answer"]))
    unparseable: Counter = Counter()
    if requests:
        from bpo.llm import make_client

        client = make_client(judge.call.endpoint, runtime, "refine_judge")
        results = run_unique(client, requests, what=f"refine judge {judge.call.model}")
        for row, i in pending:
            verdicts = []
            for side, res in (("a_first", results[i]), ("b_first", results[i + 1])):
                parsed = parse_verdict(res.text, lenient=judge.lenient_verdicts)
                if parsed.verdict is None:
                    unparseable[(parsed.reason or "no verdict").split(":")[0]] += 1
                row.update({f"verdict_{side}": parsed.verdict, f"raw_{side}": res.text, f"rule_{side}": parsed.rule})
                verdicts.append(parsed.verdict)
            pair = combine_orders(*verdicts)
            row.update(
                outcome=pair.outcome,
                consistent=pair.consistent,
                backend="+".join(sorted({results[i].backend, results[i + 1].backend})),
            )
    write_table(rows, out_path, CANDIDATE_JUDGMENTS)
    stats = {
        "matches": len(rows),
        "calls": len(requests),
        "outcomes": dict(Counter(r["outcome"] for r in rows)),
        "unparseable": dict(unparseable),
    }
    log.info("judged the candidates (%s): %s", settings.compare, stats)
    return stats
