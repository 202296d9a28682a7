"""BPO for SFT data (the paper's ``alpaca_reproduce``): optimize the instructions of an
Alpaca-format dataset and have a target LLM answer the optimized instructions.

Step 1 is :func:`bpo.eval.optimize.optimize_testset` with ``format: alpaca`` (context = the
``input`` field, never rewritten). Step 2 (:func:`answer_sft`) writes two files:

- ``reproduce``: ``{instruction, input, output, optimized_prompt, res}`` per record, the
  layout the BPO authors published (original fields, the optimized instruction, the new
  response);
- ``sft``: plain Alpaca ``{instruction, input, output}`` with the ORIGINAL instruction and
  the new response, ready for instruction tuning.

Records whose answer failed are left out of both files and counted in the log and stats.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from bpo.eval.answer import answer_questions
from bpo.eval.testsets import read_records, render_question
from bpo.schemas import OPTIMIZED, read_table

log = logging.getLogger(__name__)


def _write_json(path: str | Path, data) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def answer_sft(
    optimized_path: str | Path,
    source_path: str | Path,
    *,
    out_reproduce: str | Path,
    out_sft: str | Path,
    target_name: str,
    target: Mapping[str, Any],
    endpoint: Mapping[str, Any] | None = None,
    cache_path: str | None = None,
    prices: Mapping | None = None,
) -> dict:
    optimized = read_table(optimized_path, OPTIMIZED).to_pylist()
    source = read_records(source_path)  # item_id of the alpaca format is the record number
    questions = [render_question(r["optimized_instruction"], r["context"]) for r in optimized]
    results = answer_questions(questions, target, endpoint=endpoint, cache_path=cache_path, prices=prices,
                               stage="sft_rewrite", name=target_name)
    reproduce, sft, dropped = [], [], Counter()
    for rec, (text, status, _backend) in zip(optimized, results):
        if not isinstance(text, str) or not text.strip():
            dropped[f"answer {status}"] += 1
            continue
        original = source[int(rec["item_id"])]
        reproduce.append({
            "instruction": rec["instruction"], "input": rec["context"], "output": original.get("output"),
            "optimized_prompt": rec["optimized_instruction"], "res": text,
        })
        sft.append({"instruction": rec["instruction"], "input": rec["context"], "output": text})
    if not sft:
        raise RuntimeError(f"SFT rewrite: no record got an answer from target '{target_name}' ({dict(dropped)})")
    _write_json(out_reproduce, reproduce)
    _write_json(out_sft, sft)
    stats = {
        "records": len(optimized), "written": len(sft), "dropped": dict(dropped),
        "rewritten": sum(r["fallback_reason"] is None for r in optimized),
    }
    log.info("SFT rewrite with %s: %s", target_name, stats)
    return stats
