"""BPO for SFT data, the whole experiment: the two students' data sets, and their answers paired
for the judge.

:func:`student_datasets` turns ``reproduce.json`` (eval.sft_rewrite) into two SFT Parquet files of
the SAME records, the schema the training stage reads (``prompt`` = the original instruction with
its input, ``optimized_prompt`` = the answer to learn): ``student_bpo`` learns the answers to the
rewritten instructions, ``student_original`` the file's own outputs (``keep``) or the same target's
answers to the original instructions (``regenerate``). A record either side lacks an answer for
is left out of both, counted by reason.

:func:`pair_model_answers` joins two models' answers to the same questions into one
``answers.parquet`` for the judge ("model B vs model A on the same prompt": B in the
``*_optimized`` columns, A in ``*_original``; ``optimizer`` names B and ``target`` names A), and
the questions as an OPTIMIZED file (rewrite = the question itself) for the results browser.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from bpo.eval.answer import answer_questions
from bpo.eval.testsets import render_question
from bpo.schemas import ANSWERS, OPTIMIZED, ORIGINAL_ANSWERS, SFT, read_table, write_table
from bpo.settings import LLMRuntime
from bpo.settings.plan import STUDENT_A, STUDENT_B
from bpo.settings.sft_data import REGENERATE, StudentDataSettings

log = logging.getLogger(__name__)

SOURCE = "sft_data"  # the SFT rows' source column


def _usable(text) -> bool:
    return isinstance(text, str) and bool(text.strip())


def read_reproduce(path: str | Path) -> list[dict]:
    """The records of ``reproduce.json``: a list of objects with instruction, input, output and res."""
    records = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(records, list) or not records:
        raise ValueError(f"{path}: expected a non-empty JSON list of records")
    for k, rec in enumerate(records):
        missing = [f for f in ("instruction", "input", "output", "res") if not isinstance(rec, dict) or f not in rec]
        if missing:
            raise ValueError(f"{path}: record {k} lacks {', '.join(missing)}")
    return records


def original_answers(records: list[dict], settings: StudentDataSettings, runtime: LLMRuntime | None) -> list:
    """The baseline's answer per record: the file's output, or the target's answer (regenerate)."""
    if settings.answer_original != REGENERATE:
        return [rec["output"] for rec in records]
    if runtime is None:
        raise ValueError("sft_data.answer_original regenerate: an LLM runtime is needed")
    questions = [render_question(rec["instruction"], rec["input"]) for rec in records]
    answered = answer_questions(questions, settings.target, runtime, stage="sft_data")
    return [text if status in ("ok", "truncated") else None for text, status, _ in answered]


def student_datasets(
    reproduce_path: str | Path,
    settings: StudentDataSettings,
    out: Mapping[str, str | Path],
    runtime: LLMRuntime | None = None,
) -> dict:
    """Write ``out[student_original]`` and ``out[student_bpo]`` (SFT schema, the same records in
    the same order). Returns counts."""
    records = read_reproduce(reproduce_path)
    baseline = original_answers(records, settings, runtime)
    rows = {STUDENT_A: [], STUDENT_B: []}
    dropped: Counter = Counter()
    for k, (rec, base) in enumerate(zip(records, baseline)):
        if not _usable(base):
            dropped[f"no original answer ({settings.answer_original})"] += 1
            continue
        if not _usable(rec["res"]):
            dropped["no answer to the rewritten instruction"] += 1
            continue
        prompt = render_question(rec["instruction"], rec["input"] or "")
        for student, answer in ((STUDENT_A, base), (STUDENT_B, rec["res"])):
            rows[student].append(
                {"pair_id": f"r{k}", "source": SOURCE, "prompt": prompt, "optimized_prompt": answer, "history": []}
            )
    if not rows[STUDENT_A]:
        raise ValueError(f"{reproduce_path}: no record has both answers ({dict(dropped)})")
    for student, student_rows in rows.items():
        write_table(student_rows, out[student], SFT)
    stats = {"records": len(records), "kept": len(rows[STUDENT_A]), "dropped": dict(dropped)}
    log.info("sft_data: %s (answer_original %s)", stats, settings.answer_original)
    return stats


def pair_model_answers(
    answers_b: str | Path, answers_a: str | Path, *, out_answers: str | Path, out_prompts: str | Path
) -> dict:
    """Join model B's and model A's ``original_answers.parquet`` of one test set by item; every
    item must be in both, asked the same way (else an error naming it)."""
    b_rows = read_table(answers_b, ORIGINAL_ANSWERS).to_pylist()
    a_rows = {r["item_id"]: r for r in read_table(answers_a, ORIGINAL_ANSWERS).to_pylist()}
    if not b_rows:
        raise ValueError(f"{answers_b}: no answers")
    if {r["item_id"] for r in b_rows} != set(a_rows):
        raise ValueError(f"{answers_b} and {answers_a} answer different items: were both made from one test set?")
    answers, prompts = [], []
    for b in b_rows:
        a = a_rows[b["item_id"]]
        if a["question"] != b["question"]:
            raise ValueError(f"item {b['item_id']}: {answers_b} and {answers_a} asked different questions")
        answers.append(
            {
                "item_id": b["item_id"],
                "testset": b["testset"],
                "optimizer": b["target"],  # model B
                "target": a["target"],  # model A
                "category": b["category"],
                "question_original": b["question"],
                "question_optimized": b["question"],
                "answer_original": a["answer"],
                "answer_optimized": b["answer"],
                "status_original": a["status"],
                "status_optimized": b["status"],
                "backend": "+".join(sorted({a["backend"], b["backend"]})),
            }
        )
        prompts.append(
            {
                "item_id": b["item_id"],
                "testset": b["testset"],
                "optimizer": b["target"],
                "category": b["category"],
                "instruction": b["question"],
                "context": "",
                "optimized_instruction": b["question"],
                "fallback_reason": None,
                "reference_optimized": None,
            }
        )
    write_table(answers, out_answers, ANSWERS)
    write_table(prompts, out_prompts, OPTIMIZED)
    log.info("paired %d answers: %s (B) vs %s (A)", len(answers), b_rows[0]["target"], answers[0]["target"])
    return {"items": len(answers)}
