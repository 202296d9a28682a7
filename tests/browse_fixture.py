"""Synthetic evaluation artifacts for the results browser's tests and benchmark.

:func:`write_artifacts` writes optimized prompts, answers and judgments for every test set,
optimizer and target, in either layout: ``old`` (today's schemas, one optimizer, no category) or
``new`` (an optimizer level in the paths, ``optimizer``/``category``/``protocol`` columns). Texts are
random words of realistic lengths; outcomes are seeded draws with verdicts that agree with them.
Optimizer ``identity`` never rewrites and always ties, as the real one does.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bpo.schemas import ANSWERS, JUDGMENTS, OPTIMIZED, write_table

VOCAB = [
    f"{a}{b}"
    for a in ("ta", "ri", "mo", "ku", "se", "lo", "ne", "pa", "vi", "do", "ge", "fu")
    for b in ("n", "ra", "sto", "mel", "kin", "dor", "lis", "pe", "tu", "ber", "go", "x", "ly", "ven")
]
CATEGORIES = ("writing", "reasoning", "coding", "open_qa", "brainstorming")
FALLBACKS = ("degenerate repetition", "context altered", "empty output")
VERDICTS = {"win": ("A", "B"), "lose": ("B", "A"), "tie": ("C", "C"), "invalid": (None, "B")}


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(VOCAB, k=rng.randint(lo, hi)))


# Columns that issue 12 added (optimizer level, categories, protocol, verdict rules): the old layout has none.
NEW_COLUMNS = {"optimizer", "category", "protocol", "rule_optimized_first", "rule_original_first"}


def _write(rows: list[dict], path: Path, schema: pa.Schema, layout: str, extra: dict[str, pa.DataType]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout == "new":  # today's schemas; columns the fixture does not draw are null
        write_table([{**dict.fromkeys(schema.names), **r} for r in rows], path, schema)
    else:  # artifacts written before evaluation had an optimizer level
        old = pa.schema([f for f in schema if f.name not in NEW_COLUMNS])
        pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in old.names} for r in rows], schema=old), path)
    return str(path)


def write_artifacts(
    root: str | Path,
    testsets: dict[str, int],
    optimizers: list[str],
    targets: list[str],
    *,
    layout: str = "old",
    seed: int = 0,
    answer_words: tuple[int, int] = (40, 120),
    rationale_words: tuple[int, int] = (20, 60),
) -> dict[str, list[str]]:
    """Write the artifacts under ``root/eval``; returns {"optimized", "answers", "judgments"}: paths."""
    if layout == "old" and optimizers != ["trained"]:
        raise ValueError("the old layout has one optimizer, 'trained'")
    rng = random.Random(seed)
    root = Path(root) / "eval"
    out: dict[str, list[str]] = {"optimized": [], "answers": [], "judgments": []}
    new = layout == "new"
    for ts, n in testsets.items():
        items = [(f"{ts}-{i:04d}", _text(rng, 8, 50), CATEGORIES[i % len(CATEGORIES)]) for i in range(n)]
        original_answers = {tg: [_text(rng, *answer_words) for _ in items] for tg in targets}
        for op in optimizers:
            base = root / ts / op if new else root / ts
            opt_rows, rewrites = [], []
            for item, q, cat in items:
                fallback = None if op == "identity" or rng.random() > 0.08 else rng.choice(FALLBACKS)
                rewrite = q if op == "identity" or fallback else q + ". " + _text(rng, 10, 50)
                rewrites.append(rewrite)
                row = {
                    "item_id": item,
                    "testset": ts,
                    "instruction": q,
                    "context": "",
                    "optimized_instruction": rewrite,
                    "fallback_reason": fallback,
                    "reference_optimized": None,
                }
                opt_rows.append({**row, "optimizer": op, "category": cat} if new else row)
            out["optimized"].append(
                _write(
                    opt_rows,
                    base / "optimized.parquet",
                    OPTIMIZED,
                    layout,
                    {"optimizer": pa.string(), "category": pa.string()},
                )
            )
            for tg in targets:
                ans_rows, judge_rows = [], []
                for k, (item, q, cat) in enumerate(items):
                    same = rewrites[k] == q
                    a_orig = original_answers[tg][k]
                    a_opt = a_orig if same else _text(rng, *answer_words)
                    outcome = "tie" if same else rng.choices(("win", "tie", "lose", "invalid"), (45, 20, 30, 5))[0]
                    v1, v2 = VERDICTS[outcome]
                    a = {
                        "item_id": item,
                        "testset": ts,
                        "target": tg,
                        "question_original": q,
                        "question_optimized": rewrites[k],
                        "answer_original": a_orig,
                        "answer_optimized": a_opt,
                        "status_original": "ok",
                        "status_optimized": "ok",
                        "backend": "standin",
                    }
                    j = {
                        "item_id": item,
                        "testset": ts,
                        "target": tg,
                        "judge_model": "judge-x",
                        "verdict_optimized_first": v1,
                        "verdict_original_first": v2,
                        "outcome": outcome,
                        "raw_optimized_first": _text(rng, *rationale_words) + f" [[{v1 or '?'}]]",
                        "raw_original_first": _text(rng, *rationale_words) + f" [[{v2}]]",
                        "backend": "standin",
                    }
                    if new:
                        a.update(optimizer=op, category=cat)
                        j.update(optimizer=op, category=cat, protocol="both_orders")
                    ans_rows.append(a)
                    judge_rows.append(j)
                out["answers"].append(
                    _write(
                        ans_rows,
                        base / tg / "answers.parquet",
                        ANSWERS,
                        layout,
                        {"optimizer": pa.string(), "category": pa.string()},
                    )
                )
                out["judgments"].append(
                    _write(
                        judge_rows,
                        base / tg / "judgments.parquet",
                        JUDGMENTS,
                        layout,
                        {"optimizer": pa.string(), "category": pa.string(), "protocol": pa.string()},
                    )
                )
    return out
